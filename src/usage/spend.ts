import type { FastifyBaseLogger } from 'fastify';
import { Counter, Gauge, type Registry } from 'prom-client';
import { AppError } from '../errors.js';
import { DAY_MS, type AdmitLimits, type LedgerStore, type UsageLedger, type WindowUsage } from './ledger.js';
import type { PricedUsage, Pricing } from './pricing.js';

/** What the call manager needs from money (see INTERFACES.md). */
export interface CallSpend {
  /** A spend cap is on (SPEND_PER_CLIENT_PER_DAY_USD or GLOBAL_SPEND_PER_DAY_USD): sidebands fail closed. */
  readonly enforcing: boolean;
  /** Prices one response.done usage of a call and charges client and global windows. */
  charge(clientKey: string, model: string, usage: unknown): Promise<{ priced?: PricedUsage; problem?: string; capped: 'client' | 'global' | undefined }>;
  /** Of these clients, which are at or over their cap now; and whether the global cap is reached. */
  capped(clientKeys: readonly string[]): Promise<{ global: boolean; clients: ReadonlySet<string> }>;
}

/** What /admin/usage returns. */
export interface UsageReport {
  window_seconds: 86400;
  store: LedgerStore;
  global: { mints: number; spend_usd: number; mints_limit: number | null; spend_limit_usd: number | null; resets_at: string | null };
  /** The top 100 by spend, then mints. */
  clients: { client: string; mints: number; spend_usd: number; active_calls: number; resets_at: string }[];
  /** The last 24 h, oldest first. */
  hourly: { hour: string; mints: number; spend_usd: number; refusals: Record<string, number> }[];
}

export interface SpendSettings {
  /** 0 = no daily quota. */
  mintsPerClientPerDay: number;
  /** Only reported here (the rate-limit plugin enforces it). */
  globalMintsPerDay: number | undefined;
  spendPerClientPerDayUsd: number | undefined;
  globalSpendPerDayUsd: number | undefined;
  secretSpendEstimateUsd: number;
}

/** The daily quota's state for the RateLimit header fields. */
export interface DayQuota {
  limit: number;
  remaining: number;
  resetMs: number;
}

export type MintAdmission =
  | { admitted: true; day: DayQuota | undefined; refund: () => void }
  /** `error` is the envelope to send (the rate-limit plugin adds its RateLimit fields to a quota 429). */
  | { admitted: false; day: DayQuota | undefined; error: AppError };

/** Secrets are charged an estimate; calls are priced from their usage by the sideband. */
export type MintKind = 'secret' | 'call';

const nano = (usd: number) => Math.round(usd * 1e9);
const dollars = (spendNano: number) => `$${(spendNano / 1e9).toFixed(2)}`;
const retryAfterSeconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));
const REPORT_CLIENTS = 100;

/** The spend metrics (one registry per app; no per-user label). */
export class SpendMetrics {
  private readonly spend: Counter<'model'>;
  private readonly children = new Map<string, Counter.Internal>();

  constructor(registry: Registry, control: () => SpendControl) {
    const registers = [registry];
    this.spend = new Counter({
      name: 'realtime_spend_usd_total',
      help: 'USD spent, by model: priced from relayed calls\' usage, plus SECRET_SPEND_ESTIMATE_USD per minted secret while a cap is on.',
      labelNames: ['model'] as const,
      registers,
    });
    new Gauge({
      name: 'realtime_spend_window_usd',
      help: 'USD spent in the current day window of the whole service (across replicas with Redis).',
      labelNames: ['scope'] as const,
      registers,
      async collect() {
        this.set({ scope: 'global' }, (await control().globalWindow()).spendUsd);
      },
    });
    new Gauge({
      name: 'realtime_spend_limit_usd',
      help: 'The daily spend caps: SPEND_PER_CLIENT_PER_DAY_USD (client) and GLOBAL_SPEND_PER_DAY_USD (global); absent when off.',
      labelNames: ['scope'] as const,
      registers,
      collect() {
        const { spendPerClientPerDayUsd, globalSpendPerDayUsd } = control().settings;
        if (spendPerClientPerDayUsd !== undefined) this.set({ scope: 'client' }, spendPerClientPerDayUsd);
        if (globalSpendPerDayUsd !== undefined) this.set({ scope: 'global' }, globalSpendPerDayUsd);
      },
    });
  }

  count(model: string, usd: number): void {
    if (usd <= 0) return;
    let child = this.children.get(model);
    if (!child) {
      child = this.spend.labels({ model });
      this.children.set(model, child);
    }
    child.inc(usd);
  }
}

/**
 * Money and the daily windows: the daily mint quota, the spend caps on mints and calls, the call
 * manager's charges, and the report of /admin/usage. With no cap on, a mint pays no round trip for
 * spend: only the quota (when on) is checked in the store.
 */
export class SpendControl implements CallSpend {
  readonly enforcing: boolean;
  private readonly limits: AdmitLimits;
  private readonly estimateNano: number;
  private readonly metrics: SpendMetrics | undefined;
  private readonly now: () => number;
  private readonly activeCalls: ((clientKeys: readonly string[]) => Promise<ReadonlyMap<string, number>>) | undefined;
  private readonly log: FastifyBaseLogger | undefined;
  /** The global window whose 80 % warning was logged (its reset time). */
  private warnedFor = 0;

  constructor(
    readonly settings: SpendSettings,
    private readonly pricing: Pricing,
    private readonly ledger: UsageLedger,
    options: {
      registry?: Registry;
      now?: () => number;
      log?: FastifyBaseLogger;
      /** Active relayed calls per client, for the report. */
      activeCalls?: (clientKeys: readonly string[]) => Promise<ReadonlyMap<string, number>>;
    } = {},
  ) {
    this.enforcing = settings.spendPerClientPerDayUsd !== undefined || settings.globalSpendPerDayUsd !== undefined;
    this.limits = {
      clientMints: settings.mintsPerClientPerDay,
      clientSpendNano: settings.spendPerClientPerDayUsd === undefined ? undefined : nano(settings.spendPerClientPerDayUsd),
      globalSpendNano: settings.globalSpendPerDayUsd === undefined ? undefined : nano(settings.globalSpendPerDayUsd),
    };
    this.estimateNano = this.enforcing ? nano(settings.secretSpendEstimateUsd) : 0;
    this.now = options.now ?? Date.now;
    this.activeCalls = options.activeCalls;
    this.log = options.log;
    this.metrics = options.registry ? new SpendMetrics(options.registry, () => this) : undefined;
  }

  get store(): LedgerStore {
    return this.ledger.store;
  }

  /**
   * One mint (a secret or a call) of a client that passed its per-second and per-minute limits:
   * the daily quota, then the client's spend cap (429), then the global spend cap (503). While a cap
   * is on, a secret charges SECRET_SPEND_ESTIMATE_USD to both windows.
   */
  async admitMint(clientKey: string, kind: MintKind): Promise<MintAdmission> {
    const now = this.now();
    const amount = { mints: 1, spendNano: kind === 'secret' ? this.estimateNano : 0 };
    const quota = this.settings.mintsPerClientPerDay;
    const refund = () => this.ledger.record(clientKey, { mints: -amount.mints, spendNano: -amount.spendNano }, this.now());
    if (quota === 0 && !this.enforcing) {
      this.ledger.record(clientKey, amount, now);
      return { admitted: true, day: undefined, refund };
    }
    const result = await this.ledger.admit(clientKey, amount, this.limits, now);
    if (result.admitted) {
      this.warnAt80(result.global);
      const day = quota > 0 ? { limit: quota, remaining: Math.max(0, quota - result.client.mints), resetMs: result.client.resetAt - now } : undefined;
      return { admitted: true, day, refund };
    }
    if (result.refusal === 'full') {
      return {
        admitted: false,
        day: undefined,
        error: new AppError(503, 'The service is counting as many clients as it can hold today; try again later.', {
          reason: 'overloaded',
          retryAfter: 60,
          logContext: { ledger: 'full' },
        }),
      };
    }
    const window = result.window;
    const waitMs = window.resetAt - now;
    const day = quota > 0 ? { limit: quota, remaining: 0, resetMs: waitMs } : undefined;
    return { admitted: false, day, error: this.refusal(result.refusal, window, waitMs) };
  }

  private refusal(reason: 'quota' | 'spend' | 'budget', window: WindowUsage, waitMs: number): AppError {
    const retryAfter = retryAfterSeconds(waitMs);
    if (reason === 'quota') {
      const limit = this.settings.mintsPerClientPerDay;
      return new AppError(429, `Daily quota of ${limit} client secrets spent; retry in ${retryAfter} s.`, {
        reason: 'quota',
        retryAfter,
        details: { limit, remaining: 0, reset_time: new Date(this.now() + waitMs).toISOString() },
      });
    }
    if (reason === 'spend') {
      const capNano = this.limits.clientSpendNano ?? 0;
      return new AppError(429, `Daily spend cap of ${dollars(capNano)} reached (${dollars(window.spendNano)} spent); retry in ${retryAfter} s.`, {
        reason: 'spend',
        retryAfter,
        details: { limit_usd: capNano / 1e9, spent_usd: window.spendNano / 1e9 },
      });
    }
    const capNano = this.limits.globalSpendNano ?? 0;
    return new AppError(503, `The service's daily spend cap of ${dollars(capNano)} is reached; try again when it turns.`, {
      reason: 'budget',
      retryAfter,
      details: { limit_usd: capNano / 1e9, spent_usd: window.spendNano / 1e9 },
      logContext: { budget: 'spend', budget_limit_usd: capNano / 1e9 },
    });
  }

  /** A secret was minted: its estimate counts in the spend metric (the caps were charged at admission). */
  countSecret(model: string): void {
    if (this.estimateNano > 0) this.metrics?.count(model, this.estimateNano / 1e9);
  }

  async charge(clientKey: string, model: string, usage: unknown): Promise<{ priced?: PricedUsage; problem?: string; capped: 'client' | 'global' | undefined }> {
    const priced = this.pricing.price(model, usage);
    if (!priced) return { problem: `no price for model ${model.slice(0, 100)}`, capped: undefined };
    if ('problem' in priced) return { problem: priced.problem, capped: undefined };
    this.metrics?.count(model, priced.costUsd);
    const amount = { mints: 0, spendNano: priced.costNanoUsd };
    const now = this.now();
    if (!this.enforcing) {
      this.ledger.record(clientKey, amount, now);
      return { priced, capped: undefined };
    }
    const { client, global } = await this.ledger.charge(clientKey, amount, now);
    this.warnAt80(global);
    return { priced, capped: this.cappedBy(client, global) };
  }

  /** Once per window, as for the mint budgets. */
  private warnAt80(global: WindowUsage): void {
    const cap = this.limits.globalSpendNano;
    if (cap === undefined || global.spendNano < 0.8 * cap || global.resetAt - this.warnedFor <= 1_000) return;
    this.warnedFor = global.resetAt;
    this.log?.warn({ budget: 'spend', spent_usd: global.spendUsd, budget_limit_usd: cap / 1e9 }, 'global daily spend cap 80 % used');
  }

  private cappedBy(client: WindowUsage, global: WindowUsage): 'client' | 'global' | undefined {
    if (this.limits.globalSpendNano !== undefined && global.spendNano >= this.limits.globalSpendNano) return 'global';
    if (this.limits.clientSpendNano !== undefined && client.spendNano >= this.limits.clientSpendNano) return 'client';
    return undefined;
  }

  async capped(clientKeys: readonly string[]): Promise<{ global: boolean; clients: ReadonlySet<string> }> {
    if (!this.enforcing) return { global: false, clients: new Set() };
    const { clients, global } = await this.ledger.windows(clientKeys, this.now());
    const globalCap = this.limits.globalSpendNano;
    const clientCap = this.limits.clientSpendNano;
    const over = new Set<string>();
    if (clientCap !== undefined) for (const [key, usage] of clients) if (usage.spendNano >= clientCap) over.add(key);
    return { global: globalCap !== undefined && global.spendNano >= globalCap, clients: over };
  }

  /** Counts a refused request in the hourly history. */
  countRefusal(reason: string): void {
    this.ledger.countRefusal(reason, this.now());
  }

  async globalWindow(): Promise<WindowUsage> {
    return (await this.ledger.windows([], this.now())).global;
  }

  async report(now = this.now()): Promise<UsageReport> {
    const snapshot = await this.ledger.snapshot(now, REPORT_CLIENTS);
    const calls = this.activeCalls ? await this.activeCalls(snapshot.clients.map((row) => row.client)) : new Map<string, number>();
    const global = snapshot.global;
    return {
      window_seconds: (DAY_MS / 1000) as 86400,
      store: snapshot.store,
      global: {
        mints: global?.mints ?? 0,
        spend_usd: (global?.spendNano ?? 0) / 1e9,
        mints_limit: this.settings.globalMintsPerDay ?? null,
        spend_limit_usd: this.settings.globalSpendPerDayUsd ?? null,
        resets_at: global ? new Date(global.resetAt).toISOString() : null,
      },
      clients: snapshot.clients.map(({ client, usage }) => ({
        client,
        mints: usage.mints,
        spend_usd: usage.spendNano / 1e9,
        active_calls: calls.get(client) ?? 0,
        resets_at: new Date(usage.resetAt).toISOString(),
      })),
      hourly: snapshot.hourly.map((hour) => ({
        hour: new Date(hour.hour).toISOString(),
        mints: hour.mints,
        spend_usd: hour.spendNano / 1e9,
        refusals: hour.refusals,
      })),
    };
  }

  /** Hands Redis what this replica counted and has not handed over yet (limits that are off). */
  flush(): Promise<void> {
    return this.ledger.flush();
  }

  async close(): Promise<void> {
    await this.ledger.close();
  }
}
