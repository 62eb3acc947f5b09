import type { FastifyBaseLogger } from 'fastify';

/** Refusals logged line by line in any one second; past it they are counted for a summary line. */
export const REFUSAL_LINES_PER_SECOND = 20;
const WINDOW_MS = 1_000;

export interface RefusalLogOptions {
  log: FastifyBaseLogger;
  perSecond?: number;
  /** Monotonic clock (ms). */
  now?: () => number;
}

/**
 * Keeps refused requests from flooding the log: the first `perSecond` refusals of each second get
 * their own refusal and access lines; the rest of that second are counted by reason and reported
 * in one `refusals aggregated` line when the second is over. Nothing a refused request costs the
 * attacker (no upstream call) can then cost the log more than a line per second.
 */
export class RefusalLog {
  private readonly perSecond: number;
  private readonly now: () => number;
  private windowStart = Number.NEGATIVE_INFINITY;
  private inWindow = 0;
  private suppressed = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly options: RefusalLogOptions) {
    this.perSecond = options.perSecond ?? REFUSAL_LINES_PER_SECOND;
    this.now = options.now ?? (() => performance.now());
  }

  /** True: log this refusal in full. False: it was counted, to be reported in the summary line. */
  admit(reason: string): boolean {
    const at = this.now();
    if (at - this.windowStart >= WINDOW_MS) {
      this.report();
      this.windowStart = at;
      this.inWindow = 0;
    }
    this.inWindow += 1;
    if (this.inWindow <= this.perSecond) return true;
    this.suppressed.set(reason, (this.suppressed.get(reason) ?? 0) + 1);
    // The summary comes even if the flood stops here.
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.report();
    }, WINDOW_MS).unref();
    return false;
  }

  /** Reports what is counted so far (shutdown). */
  close(): void {
    this.report();
  }

  private report(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.suppressed.size === 0) return;
    const counts = Object.fromEntries(this.suppressed);
    const total = [...this.suppressed.values()].reduce((sum, n) => sum + n, 0);
    this.suppressed = new Map();
    this.options.log.warn(
      { refusals_suppressed: counts, refusals_suppressed_total: total, lines_per_second: this.perSecond },
      'refusals aggregated',
    );
  }
}
