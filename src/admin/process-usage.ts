import type { UsageReport } from './usage-report.js';

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;
/** Clients tracked at once; past it a new client is not tracked (never evicts one still in its window). */
const MAX_CLIENTS = 10_000;
const TOP_CLIENTS = 100;

interface HourBucket {
  mints: number;
  refusals: Record<string, number>;
}

/**
 * What this process alone has seen in the last 24 h: mints per client (each client's window opens
 * at its first mint, as the daily quota's does) and mints and refusals per hour. It stands in for
 * the usage ledger (Redis-wide, priced) until that is wired in, and knows no spend.
 */
export class ProcessUsage {
  private readonly clients = new Map<string, { mints: number; resetAt: number }>();
  private readonly hours = new Map<number, HourBucket>();

  constructor(
    private readonly options: {
      now: () => number;
      /** GLOBAL_MINTS_PER_DAY, shown as the limit. */
      mintsLimit: number | undefined;
      /** Active relayed calls by client, when known. */
      activeCalls?: (client: string) => number;
    },
  ) {}

  recordMint(client: string): void {
    const now = this.options.now();
    this.bucket(now).mints += 1;
    let entry = this.clients.get(client);
    if (entry && entry.resetAt <= now) {
      this.clients.delete(client);
      entry = undefined;
    }
    if (!entry) {
      if (this.clients.size >= MAX_CLIENTS) this.sweep(now);
      if (this.clients.size >= MAX_CLIENTS) return;
      entry = { mints: 0, resetAt: now + DAY_MS };
      this.clients.set(client, entry);
    }
    entry.mints += 1;
  }

  recordRefusal(reason: string): void {
    const bucket = this.bucket(this.options.now());
    bucket.refusals[reason] = (bucket.refusals[reason] ?? 0) + 1;
  }

  async report(): Promise<UsageReport> {
    const now = this.options.now();
    this.sweep(now);
    const currentHour = Math.floor(now / HOUR_MS) * HOUR_MS;
    const hourly: UsageReport['hourly'] = [];
    for (let start = currentHour - 23 * HOUR_MS; start <= currentHour; start += HOUR_MS) {
      const bucket = this.hours.get(start);
      hourly.push({ hour: new Date(start).toISOString(), mints: bucket?.mints ?? 0, spend_usd: 0, refusals: { ...bucket?.refusals } });
    }
    const clients = [...this.clients.entries()]
      .sort(([, a], [, b]) => b.mints - a.mints)
      .slice(0, TOP_CLIENTS)
      .map(([client, entry]) => ({
        client,
        mints: entry.mints,
        spend_usd: 0,
        active_calls: this.options.activeCalls?.(client) ?? 0,
        resets_at: new Date(entry.resetAt).toISOString(),
      }));
    return {
      window_seconds: 86400,
      store: 'memory',
      global: {
        mints: hourly.reduce((sum, h) => sum + h.mints, 0),
        spend_usd: 0,
        mints_limit: this.options.mintsLimit ?? null,
        spend_limit_usd: null,
        resets_at: null,
      },
      clients,
      hourly,
    };
  }

  private bucket(now: number): HourBucket {
    const start = Math.floor(now / HOUR_MS) * HOUR_MS;
    let bucket = this.hours.get(start);
    if (!bucket) {
      bucket = { mints: 0, refusals: {} };
      this.hours.set(start, bucket);
      for (const hour of this.hours.keys()) if (hour <= start - DAY_MS) this.hours.delete(hour);
    }
    return bucket;
  }

  private sweep(now: number): void {
    for (const [client, entry] of this.clients) if (entry.resetAt <= now) this.clients.delete(client);
  }
}
