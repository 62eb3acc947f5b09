export type UpstreamStatus = 'connected' | 'disconnected' | 'unknown';

/**
 * OpenAI reachability for /healthz, checked at most once per interval however often the probe
 * comes. Answers at once from the last result (stale-while-revalidate), so a slow OpenAI never
 * slows the health probe.
 */
export class UpstreamHealth {
  private status: UpstreamStatus = 'unknown';
  private checkedAt: number | undefined;
  private inFlight: Promise<void> | undefined;

  constructor(
    private readonly check: () => Promise<boolean>,
    private readonly intervalMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  snapshot(): { status: UpstreamStatus; checkedAt: string | undefined } {
    const stale = this.checkedAt === undefined || this.now() - this.checkedAt >= this.intervalMs;
    if (stale && !this.inFlight) {
      this.inFlight = this.check()
        .then(
          (ok) => {
            this.status = ok ? 'connected' : 'disconnected';
          },
          () => {
            this.status = 'disconnected';
          },
        )
        .finally(() => {
          this.checkedAt = this.now();
          this.inFlight = undefined;
        });
    }
    return {
      status: this.status,
      checkedAt: this.checkedAt === undefined ? undefined : new Date(this.checkedAt).toISOString(),
    };
  }

  /** Resolves when the check in flight (if any) is done: for shutdown and tests. */
  async settled(): Promise<void> {
    await this.inFlight;
  }
}
