import type { UpstreamCheck } from './client.js';

/**
 * What /healthz reports about OpenAI: connected; disconnected (unreachable, timed out, or any other
 * status); unauthorized (OpenAI answered 401/403: the key is bad or revoked); unknown before the
 * first check has answered.
 */
export type UpstreamStatus = 'connected' | 'disconnected' | 'unauthorized' | 'unknown';

const STATUS_OF: Record<UpstreamCheck, UpstreamStatus> = {
  ok: 'connected',
  unauthorized: 'unauthorized',
  unreachable: 'disconnected',
};

/**
 * OpenAI reachability for /healthz and /readyz, checked at most once per interval however often
 * the probes come. Answers at once from the last result (stale-while-revalidate), so a slow OpenAI
 * never slows a probe.
 */
export class UpstreamHealth {
  private status: UpstreamStatus = 'unknown';
  private checkedAt: number | undefined;
  private inFlight: Promise<void> | undefined;

  constructor(
    private readonly check: () => Promise<UpstreamCheck>,
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
    /** Told each time the status changes (not on every check): for one log line per transition. */
    private readonly onChange: (from: UpstreamStatus, to: UpstreamStatus) => void = () => undefined,
  ) {}

  snapshot(): { status: UpstreamStatus; checkedAt: string | undefined } {
    const stale = this.checkedAt === undefined || this.now() - this.checkedAt >= this.intervalMs;
    if (stale) this.refresh();
    return {
      status: this.status,
      checkedAt: this.checkedAt === undefined ? undefined : new Date(this.checkedAt).toISOString(),
    };
  }

  /** Starts a check unless one is under way: at boot, so a bad key shows before the first probe. */
  refresh(): void {
    if (this.inFlight) return;
    this.inFlight = this.check()
      .then(
        (result) => this.record(STATUS_OF[result]),
        () => this.record('disconnected'),
      )
      .finally(() => {
        this.checkedAt = this.now();
        this.inFlight = undefined;
      });
  }

  /**
   * Whether OpenAI has not refused the key. Before any check has answered it waits for the one
   * under way (bounded by the check's timeout), so a deploy probe never passes on "unknown".
   */
  async keyAccepted(): Promise<boolean> {
    this.snapshot();
    if (this.checkedAt === undefined) await this.inFlight;
    return this.status !== 'unauthorized';
  }

  private record(status: UpstreamStatus): void {
    const from = this.status;
    this.status = status;
    if (from !== status) this.onChange(from, status);
  }

  /** Resolves when the check in flight (if any) is done: for shutdown and tests. */
  async settled(): Promise<void> {
    await this.inFlight;
  }
}
