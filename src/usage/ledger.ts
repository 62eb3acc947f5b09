import type { FastifyBaseLogger } from 'fastify';
import type { SharedStateMode } from '../redis.js';

/** The day window of the daily quota and the spend caps. */
export const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;
/**
 * Clients one process keeps a day window for: sized by what it must hold (a day of distinct clients
 * of a busy deployment), about 210 bytes each (42 MB full). Past it, new clients are refused, never forgotten.
 */
export const LEDGER_CLIENTS = 200_000;

/** Where the windows are counted right now (fallback: in-process while Redis is away). */
export type LedgerStore = SharedStateMode;

export interface WindowUsage {
  mints: number;
  /** Integer nano-dollars (1e-9 USD): sums stay exact. */
  spendNano: number;
  spendUsd: number;
  /** When the window turns (ms since the epoch). */
  resetAt: number;
}

/** What one event adds to a window (negative: a refund). */
export interface Amount {
  mints: number;
  spendNano: number;
}

/** The limits an admission checks; each undefined (or mints 0) is off. */
export interface AdmitLimits {
  clientMints?: number;
  clientSpendNano?: number;
  globalSpendNano?: number;
}

export type Admission =
  | { admitted: true; client: WindowUsage; global: WindowUsage }
  | { admitted: false; refusal: 'quota' | 'spend' | 'budget'; window: WindowUsage }
  /** The ledger holds as many clients as it may: a new one is refused, nobody is forgotten. */
  | { admitted: false; refusal: 'full' };

export interface HourUsage {
  /** Start of the hour (ms since the epoch). */
  hour: number;
  mints: number;
  spendNano: number;
  refusals: Record<string, number>;
}

export interface LedgerSnapshot {
  store: LedgerStore;
  /** undefined: nothing counted in the current window. */
  global: WindowUsage | undefined;
  /** The top clients by spend, then mints. */
  clients: { client: string; usage: WindowUsage }[];
  /** The last 24 hours, oldest first, every hour present. */
  hourly: HourUsage[];
}

/**
 * Per-client and global day windows of mints and spend, and an hourly history. Windows start at a
 * client's first counted event and last DAY_MS (the rule the daily quota always had).
 */
export interface UsageLedger {
  readonly store: LedgerStore;
  /** Checks the limits that are on; when they pass, adds `amount` to the client's and the global window. */
  admit(clientKey: string, amount: Amount, limits: AdmitLimits, now: number): Promise<Admission>;
  /** Adds without checking and without waiting (refunds are negative amounts). */
  record(clientKey: string, amount: Amount, now: number): void;
  /** Adds to both windows and answers them after the addition (spend caps need the totals). */
  charge(clientKey: string, amount: Amount, now: number): Promise<{ client: WindowUsage; global: WindowUsage }>;
  /** The current windows of these clients and the global one. */
  windows(clientKeys: readonly string[], now: number): Promise<{ clients: Map<string, WindowUsage>; global: WindowUsage }>;
  /** Counts a refused request in the hourly history (never waits). */
  countRefusal(reason: string, now: number): void;
  snapshot(now: number, top: number): Promise<LedgerSnapshot>;
  /** Hands the shared store what was counted only here (a Redis ledger does it every 2 s anyway). */
  flush(): Promise<void>;
  close(): Promise<void>;
}

export interface WindowEntry {
  mints: number;
  spendNano: number;
  resetAt: number;
  /** Redis ledger only: counted here and not yet in Redis. */
  pendingMints: number;
  pendingSpendNano: number;
  /** Redis ledger only: the Redis connection generation whose counts this entry includes. */
  generation: number;
  /** Redis ledger only: a merge of this window into Redis in flight (true when it got there). */
  merging?: Promise<boolean> | undefined;
}

export function usageOf(entry: WindowEntry | undefined, now: number, windowMs: number): WindowUsage {
  if (!entry) return { mints: 0, spendNano: 0, spendUsd: 0, resetAt: now + windowMs };
  return { mints: entry.mints, spendNano: entry.spendNano, spendUsd: entry.spendNano / 1e9, resetAt: entry.resetAt };
}

/** Which limit a window has reached (spent >= cap refuses), if any. */
export function refusalOf(usage: { mints: number; spendNano: number }, maxMints: number | undefined, capNano: number | undefined): 'quota' | 'spend' | undefined {
  if (maxMints !== undefined && maxMints > 0 && usage.mints >= maxMints) return 'quota';
  if (capNano !== undefined && usage.spendNano >= capNano) return 'spend';
  return undefined;
}

export function addTo(entry: WindowEntry, amount: Amount): void {
  entry.mints = Math.max(0, entry.mints + amount.mints);
  entry.spendNano = Math.max(0, entry.spendNano + amount.spendNano);
}

/**
 * The day windows of at most `capacity` clients. Expired windows are swept (from the oldest, which
 * Map insertion order keeps first, plus a full pass at most once a second when full); when still
 * full, a new client gets no window (the caller refuses it) and no live window is ever dropped.
 */
export class WindowBook {
  private readonly entries = new Map<string, WindowEntry>();
  private lastFullSweep = Number.NEGATIVE_INFINITY;
  private fullSince: number | undefined;

  constructor(
    readonly capacity: number,
    readonly windowMs: number,
    private readonly log: FastifyBaseLogger | undefined,
    private readonly what: string,
  ) {}

  get size(): number {
    return this.entries.size;
  }

  /** The live window of a key (an expired one is dropped). */
  get(key: string, now: number): WindowEntry | undefined {
    const entry = this.entries.get(key);
    if (entry && entry.resetAt <= now) {
      this.entries.delete(key);
      return undefined;
    }
    return entry;
  }

  /**
   * The live window of a key, opened (ending at `resetAt`) when there is none; undefined when the
   * book is full. `force` opens one past the capacity (for a call already admitted).
   */
  open(key: string, now: number, resetAt = now + this.windowMs, force = false): WindowEntry | undefined {
    const existing = this.get(key, now);
    if (existing) return existing;
    if (this.entries.size >= this.capacity && !force && !this.makeRoom(now)) return undefined;
    const entry: WindowEntry = { mints: 0, spendNano: 0, resetAt, pendingMints: 0, pendingSpendNano: 0, generation: 0 };
    this.entries.set(key, entry);
    return entry;
  }

  drop(key: string): void {
    this.entries.delete(key);
  }

  *live(now: number): IterableIterator<[string, WindowEntry]> {
    for (const [key, entry] of this.entries) if (entry.resetAt > now) yield [key, entry];
  }

  /** Drops every expired window (a full pass). */
  sweep(now: number): void {
    for (const [key, entry] of this.entries) if (entry.resetAt <= now) this.entries.delete(key);
    this.lastFullSweep = now;
    if (this.fullSince !== undefined && this.entries.size < this.capacity) {
      this.log?.info({ ledger: this.what, clients: this.entries.size }, 'usage ledger has room again');
      this.fullSince = undefined;
    }
  }

  private makeRoom(now: number): boolean {
    // Oldest first: a window opened earlier ends earlier (resetAt from Redis may break the order; the full pass catches those).
    for (const [key, entry] of this.entries) {
      if (entry.resetAt > now) break;
      this.entries.delete(key);
    }
    if (this.entries.size >= this.capacity && now - this.lastFullSweep >= 1_000) this.sweep(now);
    if (this.entries.size < this.capacity) return true;
    if (this.fullSince === undefined) {
      this.fullSince = now;
      this.log?.error(
        { ledger: this.what, capacity: this.capacity },
        this.what === 'memory'
          ? 'usage ledger full: new clients are refused until windows expire (no client is forgotten)'
          : 'usage ledger: the in-process copy is full; new clients are counted in Redis only, and refused while Redis is away',
      );
    }
    return false;
  }
}

/** The last 24 hours of mints, spend and refusals, one bucket per hour. */
export class HourlyHistory {
  private readonly hours = new Map<number, HourUsage>();

  bucket(now: number): HourUsage {
    const hour = Math.floor(now / HOUR_MS) * HOUR_MS;
    let bucket = this.hours.get(hour);
    if (!bucket) {
      bucket = { hour, mints: 0, spendNano: 0, refusals: {} };
      this.hours.set(hour, bucket);
      for (const old of this.hours.keys()) if (old <= hour - 24 * HOUR_MS) this.hours.delete(old);
    }
    return bucket;
  }

  add(now: number, amount: Amount): void {
    const bucket = this.bucket(now);
    bucket.mints += amount.mints;
    bucket.spendNano += amount.spendNano;
  }

  refuse(now: number, reason: string, count = 1): void {
    const bucket = this.bucket(now);
    bucket.refusals[reason] = (bucket.refusals[reason] ?? 0) + count;
  }

  /** Buckets with something in them (any age), and forgets them. */
  drain(): HourUsage[] {
    const all = [...this.hours.values()];
    this.hours.clear();
    return all;
  }

  /** The 24 hours ending with the current one, oldest first. */
  last24(now: number, source: (hour: number) => HourUsage | undefined = (hour) => this.hours.get(hour)): HourUsage[] {
    return lastHours(now).map((hour) => {
      const found = source(hour);
      return found ? { ...found, refusals: { ...found.refusals } } : { hour, mints: 0, spendNano: 0, refusals: {} };
    });
  }
}

/** Starts of the 24 hours ending with the current one, oldest first. */
export function lastHours(now: number): number[] {
  const current = Math.floor(now / HOUR_MS) * HOUR_MS;
  return Array.from({ length: 24 }, (_, i) => current - (23 - i) * HOUR_MS);
}

/** Orders clients by spend, then mints (both descending). */
export function byUsage(a: { usage: WindowUsage }, b: { usage: WindowUsage }): number {
  return b.usage.spendNano - a.usage.spendNano || b.usage.mints - a.usage.mints;
}

export interface LedgerOptions {
  capacity?: number;
  windowMs?: number;
  log?: FastifyBaseLogger;
  /** The clock of the background sweep (ms since the epoch). */
  clock?: () => number;
}

/** One process's windows: bounded, swept, never evicted by other clients' traffic. */
export class MemoryLedger implements UsageLedger {
  readonly store = 'memory' as const;
  private readonly book: WindowBook;
  private readonly windowMs: number;
  private global: WindowEntry | undefined;
  private readonly history = new HourlyHistory();
  private readonly sweeper: NodeJS.Timeout;

  constructor(options: LedgerOptions = {}) {
    this.windowMs = options.windowMs ?? DAY_MS;
    this.book = new WindowBook(options.capacity ?? LEDGER_CLIENTS, this.windowMs, options.log, 'memory');
    const clock = options.clock ?? Date.now;
    this.sweeper = setInterval(() => this.book.sweep(clock()), 60_000).unref();
  }

  get clientCount(): number {
    return this.book.size;
  }

  private globalEntry(now: number): WindowEntry {
    if (!this.global || this.global.resetAt <= now) {
      this.global = { mints: 0, spendNano: 0, resetAt: now + this.windowMs, pendingMints: 0, pendingSpendNano: 0, generation: 0 };
    }
    return this.global;
  }

  async admit(clientKey: string, amount: Amount, limits: AdmitLimits, now: number): Promise<Admission> {
    const existing = this.book.get(clientKey, now);
    const client = usageOf(existing, now, this.windowMs);
    const refusal = refusalOf(client, limits.clientMints, limits.clientSpendNano);
    if (refusal) return { admitted: false, refusal, window: client };
    const global = this.globalEntry(now);
    if (refusalOf(global, undefined, limits.globalSpendNano)) {
      return { admitted: false, refusal: 'budget', window: usageOf(global, now, this.windowMs) };
    }
    const entry = existing ?? this.book.open(clientKey, now);
    if (!entry) return { admitted: false, refusal: 'full' };
    addTo(entry, amount);
    addTo(global, amount);
    this.history.add(now, amount);
    return { admitted: true, client: usageOf(entry, now, this.windowMs), global: usageOf(global, now, this.windowMs) };
  }

  record(clientKey: string, amount: Amount, now: number): void {
    const refund = amount.mints < 0 || amount.spendNano < 0;
    const entry = refund ? this.book.get(clientKey, now) : this.book.open(clientKey, now);
    if (entry) {
      addTo(entry, amount);
      // A window a refund emptied holds nothing worth its room (a request refused after admission).
      if (refund && entry.mints === 0 && entry.spendNano === 0) this.book.drop(clientKey);
    }
    addTo(this.globalEntry(now), amount);
    this.history.add(now, amount);
  }

  async charge(clientKey: string, amount: Amount, now: number): Promise<{ client: WindowUsage; global: WindowUsage }> {
    // A call already admitted is charged even past the capacity: its spend is never dropped.
    const entry = this.book.open(clientKey, now, now + this.windowMs, true) as WindowEntry;
    const global = this.globalEntry(now);
    addTo(entry, amount);
    addTo(global, amount);
    this.history.add(now, amount);
    return { client: usageOf(entry, now, this.windowMs), global: usageOf(global, now, this.windowMs) };
  }

  async windows(clientKeys: readonly string[], now: number): Promise<{ clients: Map<string, WindowUsage>; global: WindowUsage }> {
    const clients = new Map<string, WindowUsage>();
    for (const key of clientKeys) clients.set(key, usageOf(this.book.get(key, now), now, this.windowMs));
    return { clients, global: usageOf(this.globalEntry(now), now, this.windowMs) };
  }

  countRefusal(reason: string, now: number): void {
    this.history.refuse(now, reason);
  }

  async snapshot(now: number, top: number): Promise<LedgerSnapshot> {
    const clients: { client: string; usage: WindowUsage }[] = [];
    for (const [client, entry] of this.book.live(now)) clients.push({ client, usage: usageOf(entry, now, this.windowMs) });
    clients.sort(byUsage);
    const global = this.global && this.global.resetAt > now ? usageOf(this.global, now, this.windowMs) : undefined;
    return { store: 'memory', global, clients: clients.slice(0, top), hourly: this.history.last24(now) };
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {
    clearInterval(this.sweeper);
  }
}
