import type { FastifyBaseLogger } from 'fastify';
import type { MintedSecret } from '../openai/client.js';
import { allocateSlots, DecayingCount, DemandModel, withRoomForRefills } from './demand.js';

/** `demand`: warm what clients ask for; `default`: only the default session (the pool before). */
export type PoolMode = 'demand' | 'default';

export interface DemandTuning {
  /** How fast old requests stop counting (default 5 minutes). */
  halfLifeMs: number;
  /** Configurations tracked at once (default 64); a new one evicts the coldest. */
  maxConfigurations: number;
  /** Decayed requests a configuration needs before it gets a warm secret (default 1.5: asked twice lately). */
  minWeight: number;
  /** Configurations with their own metric label (default 8); the rest count as `other`. */
  labelLimit: number;
}

export interface SecretPoolOptions<C> {
  /**
   * Warm secrets ready in total, shared among configurations. Refills replacing secrets just handed
   * out come on top, as many as the drain keeps on their way (drain rate x replacement time).
   */
  size: number;
  /** A pooled secret with less than this left is dropped (wasted), never handed out. */
  minRemainingSeconds: number;
  /** Lifetime OpenAI gives a secret: with minRemainingSeconds, how long a pooled one stays usable. */
  ttlSeconds: number;
  /** The pool never starts mints faster than this; below it, it refills at the rate it is drained. */
  refillPerSecond: number;
  // Method syntax: a pool of any configuration type can be read as a SecretPool (stats only).
  mint(config: C): Promise<MintedSecret>;
  /** Milliseconds until OpenAI may be called (breaker, budget...); 0 = now. The one gate on refills. */
  upstreamWaitMs: () => number;
  log: FastifyBaseLogger;
  /** Warm at boot, before any request is seen: the default session. */
  seed: { key: string; config: C };
  mode?: PoolMode;
  demand?: Partial<DemandTuning>;
  /** Wall clock (ms) for expiry. */
  now?: () => number;
  /** Monotonic clock (ms) for demand decay, the drain and replacement times; refill pacing always uses performance.now(). */
  demandClock?: () => number;
}

export interface SecretPoolStats {
  size: number;
  capacity: number;
  hits: number;
  misses: number;
  /** Pooled secrets wasted: gone stale, or discarded to make room, unused. */
  expired: number;
}

export interface PoolLabelStats {
  /** `model|voice|difficulty|sport`, or `other`. */
  configuration: string;
  size: number;
  hits: number;
  misses: number;
  wasted: number;
}

interface Bucket<C> {
  key: string;
  config: C;
  secrets: MintedSecret[];
  inFlight: number;
  /** Requests that found no secret and wait for a refill in flight, one each (undefined: it failed). */
  waiters: ((secret: MintedSecret | undefined) => void)[];
  /** When each secret not yet replaced left (taken, or a refill claimed), oldest first (demand clock). */
  owed: number[];
}

interface Counters {
  hits: number;
  misses: number;
  wasted: number;
}

export const OTHER_LABEL = 'other';
const DEFAULT_TUNING: DemandTuning = { halfLifeMs: 5 * 60_000, maxConfigurations: 64, minWeight: 1.5, labelLimit: 8 };
// The drain rate follows traffic within seconds; demand (what to keep warm) over minutes.
const DRAIN_HALF_LIFE_MS = 2_000;
// Refill up to twice the drain: refills are evenly spaced while takes come in bursts (Poisson), and
// a refill that waits its turn leaves its slot empty for longer (at 2x the wait is half a spacing).
const DRAIN_HEADROOM = 2;
// With no drain to follow yet (boot, a re-allocation), refill at no less than this.
const MIN_REFILL_PER_SECOND = 2;
const REALLOCATE_MS = 100;
// A warm labelled configuration keeps its label until a newcomer is asked for this many times more.
const LABEL_HANDOVER_RATIO = 4;
// The replacement time is a moving average: it follows OpenAI within a few dozen refills.
const REPLACE_SMOOTHING = 0.1;

/**
 * Warm client secrets for the session configurations clients actually ask for (never free-text
 * instructions: the caller decides what is poolable). `size` slots are shared in proportion to a
 * decaying request count; a configuration nobody asks for any more gets no slot and no refill.
 * Slots count secrets ready: the refills on their way to replace secrets handed out get room on top
 * (drain rate x replacement time, shared where they save the most misses), so a slot does not
 * stand empty for a round trip each time it is used. The next refill goes to the configuration
 * whose secrets last the shortest at its request rate.
 * Each secret leaves the pool once (shift), so no two clients ever share one. Refills are paced
 * at the drain rate up to `refillPerSecond`, back off after failures, and wait while
 * `upstreamWaitMs` says so.
 */
export class SecretPool<C = unknown> {
  private readonly buckets = new Map<string, Bucket<C>>();
  private readonly demand: DemandModel<C>;
  private readonly drain: DecayingCount;
  private readonly tuning: DemandTuning;
  private readonly mode: PoolMode;
  private readonly now: () => number;
  private readonly demandClock: () => number;
  private readonly usesPerWeight: number;
  private readonly labels = new Map<string, Counters>();
  private readonly other: Counters = { hits: 0, misses: 0, wasted: 0 };
  private targets = new Map<string, number>();
  /** Demand weight of each configuration with a target, as of the last allocation. */
  private weights = new Map<string, number>();
  /** Refills on their way allowed on top of `size`, as of the last allocation. */
  private roomForRefills = 0;
  /**
   * Moving average of a secret's replacement time (demand clock, ms): from leaving the pool to its
   * refill landing, the wait for a turn under the refill cap included. Unknown until a refill lands.
   */
  private replaceMs: number | undefined;
  private allocatedAt = Number.NEGATIVE_INFINITY;
  private demandSinceAllocation = false;
  private reallocateTimer: NodeJS.Timeout | undefined;
  private lastLaunch = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private closed = true;
  private hits = 0;
  private misses = 0;
  private expired = 0;
  private failures = 0;
  private lastFailureAt = 0;

  constructor(private readonly options: SecretPoolOptions<C>) {
    this.tuning = { ...DEFAULT_TUNING, ...options.demand };
    this.mode = options.mode ?? 'demand';
    this.now = options.now ?? Date.now;
    this.demandClock = options.demandClock ?? (() => performance.now());
    this.demand = new DemandModel({
      halfLifeMs: this.tuning.halfLifeMs,
      maxConfigurations: this.tuning.maxConfigurations,
      now: this.demandClock,
    });
    this.drain = new DecayingCount(DRAIN_HALF_LIFE_MS);
    const usableSeconds = options.ttlSeconds - options.minRemainingSeconds;
    this.usesPerWeight = usableSeconds / (this.tuning.halfLifeMs / Math.LN2 / 1000);
  }

  start(): void {
    this.closed = false;
    // Worth two thresholds: the default session is warm at boot and, unasked, cools in one half-life.
    this.demand.record(this.options.seed.key, this.options.seed.config, 2 * this.tuning.minWeight);
    this.pump();
  }

  /** Discards every pooled secret and stops refilling. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.expiryTimer);
    clearTimeout(this.reallocateTimer);
    this.timer = undefined;
    this.expiryTimer = undefined;
    this.reallocateTimer = undefined;
    for (const bucket of this.buckets.values()) {
      bucket.secrets.length = 0;
      for (const waiter of bucket.waiters.splice(0)) waiter(undefined);
    }
  }

  /**
   * A fresh secret for exactly one caller, or undefined (a miss). Counts as demand for `key`.
   * In `default` mode, other configurations are not the pool's business (not counted).
   */
  take(key: string, config: C): MintedSecret | undefined {
    if (this.mode === 'default' && key !== this.options.seed.key) return undefined;
    this.demand.record(key, config);
    this.demandSinceAllocation = true;
    this.drain.add(this.demandClock());
    const bucket = this.buckets.get(key);
    if (bucket) this.dropStale(bucket);
    const secret = bucket?.secrets.shift();
    if (secret && bucket) this.owe(bucket);
    const counters = this.countersFor(key);
    if (secret) {
      this.hits += 1;
      counters.hits += 1;
    } else {
      this.misses += 1;
      counters.misses += 1;
    }
    this.pump();
    return secret;
  }

  /**
   * After a miss: the refill already in flight for `key` that no one else waits for, if any. It was
   * started before this request came, so it lands sooner than a new mint would, and it goes to this
   * request alone. Resolves to undefined if that refill fails (mint directly then).
   */
  waitForRefill(key: string): Promise<MintedSecret | undefined> | undefined {
    const bucket = this.buckets.get(key);
    if (this.closed || !bucket || bucket.inFlight <= bucket.waiters.length) return undefined;
    const promised = new Promise<MintedSecret | undefined>((resolve) => bucket.waiters.push(resolve));
    this.owe(bucket);
    // The refill is spoken for: the configuration is one more short.
    this.pump();
    return promised;
  }

  get stats(): SecretPoolStats {
    let size = 0;
    for (const bucket of this.buckets.values()) size += bucket.secrets.length;
    return { size, capacity: this.options.size, hits: this.hits, misses: this.misses, expired: this.expired };
  }

  /** Counters by configuration, at most `labelLimit` of them plus `other`: a bounded label set. */
  labelStats(): PoolLabelStats[] {
    const rows: PoolLabelStats[] = [];
    let labelledSize = 0;
    for (const [configuration, counters] of this.labels) {
      const size = this.buckets.get(configuration)?.secrets.length ?? 0;
      labelledSize += size;
      rows.push({ configuration, size, ...counters });
    }
    rows.push({ configuration: OTHER_LABEL, size: this.stats.size - labelledSize, ...this.other });
    return rows;
  }

  /**
   * Secrets each configuration should have ready or coming now, by demand: its slots plus room for
   * its refills on their way (a fresh look, not the cached one).
   */
  get allocation(): ReadonlyMap<string, number> {
    return this.allocate().targets;
  }

  /**
   * Refills the drain keeps on their way (waiting for a turn, or at OpenAI): drain rate x replacement
   * time, at most `size` (0 until a refill has landed).
   */
  get expectedRefillsOnTheirWay(): number {
    if (this.replaceMs === undefined) return 0;
    const onTheirWay = (this.drain.ratePerSecondAt(this.demandClock()) * this.replaceMs) / 1000;
    return Math.min(this.options.size, onTheirWay);
  }

  /**
   * A configuration gets its own label once asked for enough to be warm. When the labels are all
   * taken, the coldest labelled one hands its label over if it has gone cold or the newcomer is far
   * more asked for; its counts go to `other`, so every sum over the metric still only grows.
   */
  private countersFor(key: string): Counters {
    const labelled = this.labels.get(key);
    if (labelled) return labelled;
    const weight = this.demand.weightOf(key);
    if (weight < this.tuning.minWeight) return this.other;
    if (this.labels.size >= this.tuning.labelLimit && !this.releaseColdestLabel(weight)) return this.other;
    const counters = { hits: 0, misses: 0, wasted: 0 };
    this.labels.set(key, counters);
    return counters;
  }

  private releaseColdestLabel(newcomerWeight: number): boolean {
    let coldest: { key: string; weight: number } | undefined;
    for (const key of this.labels.keys()) {
      const weight = this.demand.weightOf(key);
      if (!coldest || weight < coldest.weight) coldest = { key, weight };
    }
    // Hysteresis (cold, or a quarter of the newcomer): two configurations of similar demand do not
    // trade the label back and forth on every request.
    if (!coldest || (coldest.weight >= this.tuning.minWeight && coldest.weight * LABEL_HANDOVER_RATIO > newcomerWeight)) return false;
    const counters = this.labels.get(coldest.key) as Counters;
    this.other.hits += counters.hits;
    this.other.misses += counters.misses;
    this.other.wasted += counters.wasted;
    this.labels.delete(coldest.key);
    return true;
  }

  private allocate(): { targets: Map<string, number>; weights: Map<string, number>; room: number } {
    const { seed, size } = this.options;
    const demands = this.mode === 'default' ? [{ key: seed.key, weight: 1 }] : this.demand.snapshot();
    const slots =
      this.mode === 'default'
        ? new Map([[seed.key, size]])
        : allocateSlots(demands, { total: size, minWeight: this.tuning.minWeight, usesPerWeight: this.usesPerWeight });
    const targets = withRoomForRefills(slots, demands, this.expectedRefillsOnTheirWay);
    const weights = new Map(demands.filter((d) => targets.has(d.key)).map((d) => [d.key, d.weight]));
    let room = 0;
    for (const [key, target] of targets) room += target - (slots.get(key) ?? 0);
    return { targets, weights, room };
  }

  /**
   * Re-allocates at most every REALLOCATE_MS: demand moves over minutes, and sorting the tracked
   * configurations on every take would cost each request more than it could ever change. Demand
   * recorded meanwhile is looked at when the interval is up.
   */
  private refreshTargets(): void {
    const now = performance.now();
    const due = this.allocatedAt + REALLOCATE_MS - now;
    if (due <= 0) {
      ({ targets: this.targets, weights: this.weights, room: this.roomForRefills } = this.allocate());
      for (const bucket of this.buckets.values()) this.trimOwed(bucket);
      this.allocatedAt = now;
      this.demandSinceAllocation = false;
    } else if (this.demandSinceAllocation && !this.reallocateTimer) {
      this.reallocateTimer = setTimeout(() => {
        this.reallocateTimer = undefined;
        this.pump();
      }, due);
      this.reallocateTimer.unref();
    }
  }

  private isStale(secret: MintedSecret): boolean {
    return secret.expiresAt * 1000 - this.now() < this.options.minRemainingSeconds * 1000;
  }

  private dropStale(bucket: Bucket<C>): void {
    // Secrets arrive in expiry order, so the stale ones are at the front.
    while (bucket.secrets.length > 0 && this.isStale(bucket.secrets[0] as MintedSecret)) {
      bucket.secrets.shift();
      this.expired += 1;
      this.countersFor(bucket.key).wasted += 1;
    }
  }

  private scheduleExpiry(): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    if (this.closed) return;
    let oldest = Number.POSITIVE_INFINITY;
    for (const bucket of this.buckets.values()) oldest = Math.min(oldest, bucket.secrets[0]?.expiresAt ?? oldest);
    if (oldest === Number.POSITIVE_INFINITY) return;
    const staleInMs = oldest * 1000 - this.options.minRemainingSeconds * 1000 - this.now();
    this.expiryTimer = setTimeout(
      () => {
        this.expiryTimer = undefined;
        for (const bucket of this.buckets.values()) this.dropStale(bucket);
        this.scheduleExpiry();
        this.pump();
      },
      Math.max(0, staleInMs) + 5,
    );
    this.expiryTimer.unref();
  }

  private wakeIn(ms: number): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, ms);
    this.timer.unref();
  }

  /**
   * Of the configurations below their allocation, the one whose secrets (ready and coming) last the
   * shortest at its request rate: it is the likeliest to be asked for while empty. Ties (none held)
   * go to the most asked for.
   */
  private neediest(): Bucket<C> | undefined {
    this.refreshTargets();
    let best: Bucket<C> | undefined;
    let bestKey: string | undefined;
    let bestLasts = Number.POSITIVE_INFINITY;
    let bestWeight = 0;
    for (const [key, target] of this.targets) {
      const bucket = this.buckets.get(key);
      const held = bucket ? this.heldBy(bucket) : 0;
      if (held >= target) continue;
      const weight = this.weights.get(key) ?? 0;
      const lasts = weight > 0 ? held / weight : Number.POSITIVE_INFINITY;
      if (bestKey === undefined || lasts < bestLasts || (lasts === bestLasts && weight > bestWeight)) {
        bestKey = key;
        bestLasts = lasts;
        bestWeight = weight;
      }
    }
    if (bestKey !== undefined) best = this.buckets.get(bestKey) ?? this.bucketFor(bestKey);
    this.forgetIdleBuckets();
    return best;
  }

  /** Secrets a configuration has or will have: pooled, plus refills in flight no request waits for. */
  private heldBy(bucket: Bucket<C>): number {
    return bucket.secrets.length + bucket.inFlight - bucket.waiters.length;
  }

  private hasRoom(): boolean {
    let held = 0;
    for (const bucket of this.buckets.values()) held += this.heldBy(bucket);
    return held < this.options.size + this.roomForRefills || this.discardCold();
  }

  /**
   * Secrets of a configuration over its allocation drain by use; one of a configuration nobody
   * asks for any more (no slot) makes room, counted as wasted: it would most likely expire unused.
   */
  private discardCold(): boolean {
    for (const bucket of this.buckets.values()) {
      if (bucket.secrets.length > 0 && !this.targets.has(bucket.key)) {
        bucket.secrets.shift();
        this.expired += 1;
        this.countersFor(bucket.key).wasted += 1;
        return true;
      }
    }
    return false;
  }

  private bucketFor(key: string): Bucket<C> | undefined {
    const { seed } = this.options;
    if (key !== seed.key && !this.demand.has(key)) return undefined;
    const config = key === seed.key ? seed.config : (this.demand.configOf(key) as C);
    const bucket: Bucket<C> = { key, config, secrets: [], inFlight: 0, waiters: [], owed: [] };
    this.buckets.set(key, bucket);
    return bucket;
  }

  /** Buckets of configurations with no slot, nothing pooled and nothing in flight: keeps the map bounded. */
  private forgetIdleBuckets(): void {
    for (const [key, bucket] of this.buckets) {
      if (bucket.secrets.length === 0 && bucket.inFlight === 0 && !this.targets.has(key)) this.buckets.delete(key);
    }
  }

  /**
   * A secret left `bucket`: its replacement's latency counts from now, so the wait for a turn under
   * the refill cap is part of it (refills held back wait as surely as refills in flight).
   */
  private owe(bucket: Bucket<C>): void {
    bucket.owed.push(this.demandClock());
    this.trimOwed(bucket);
  }

  /**
   * Only secrets that will be replaced are owed: as many as the configuration is below its target
   * (one taken while it held more than its target, or after its target fell, never is). The oldest
   * go first, so a replacement time is never stretched by a secret nobody replaced.
   */
  private trimOwed(bucket: Bucket<C>): void {
    const due = Math.max(0, (this.targets.get(bucket.key) ?? 0) - this.heldBy(bucket));
    if (bucket.owed.length > due) bucket.owed.splice(0, bucket.owed.length - due);
  }

  private noteReplaceTime(ms: number): void {
    this.replaceMs = this.replaceMs === undefined ? ms : this.replaceMs + REPLACE_SMOOTHING * (ms - this.replaceMs);
  }

  /** Refills per second: the drain rate with headroom, at least a floor, never above the cap. */
  private refillRate(): number {
    const drained = this.drain.ratePerSecondAt(this.demandClock()) * DRAIN_HEADROOM;
    return Math.min(this.options.refillPerSecond, Math.max(MIN_REFILL_PER_SECOND, drained));
  }

  private pump(): void {
    if (this.closed || this.timer) return;
    const bucket = this.neediest();
    if (!bucket) return;
    const upstreamWait = this.options.upstreamWaitMs();
    // After failures (a bad key, say) back off, up to a minute, rather than mint at the full rate.
    const now = performance.now();
    const failureWait =
      this.failures > 0 ? this.lastFailureAt + Math.min(60_000, 1000 * 2 ** (this.failures - 1)) - now : 0;
    if (upstreamWait > 0 || failureWait > 0) {
      // A refill held back by an outage would measure the outage, not OpenAI's latency.
      for (const each of this.buckets.values()) each.owed.length = 0;
      return this.wakeIn(Math.max(upstreamWait, failureWait));
    }
    const rateWait = this.lastLaunch + 1000 / this.refillRate() - now;
    if (rateWait > 0) return this.wakeIn(rateWait);
    if (!this.hasRoom()) return;

    this.lastLaunch = now;
    bucket.inFlight += 1;
    const owedSince = bucket.owed.shift() ?? this.demandClock();
    this.options
      .mint(bucket.config)
      .then(
        (secret) => {
          if (this.failures > 0) this.options.log.info('token pool: refilling again');
          this.failures = 0;
          this.noteReplaceTime(this.demandClock() - owedSince);
          if (this.closed) return;
          if (this.isStale(secret)) return bucket.waiters.shift()?.(undefined);
          const waiter = bucket.waiters.shift();
          if (waiter) return waiter(secret);
          bucket.secrets.push(secret);
          // A bucket forgotten while this mint was in flight comes back with its secret.
          if (!this.buckets.has(bucket.key)) this.buckets.set(bucket.key, bucket);
          if (!this.expiryTimer) this.scheduleExpiry();
        },
        (error: unknown) => {
          if (this.failures === 0) {
            this.options.log.warn({ err_kind: (error as Error).name }, 'token pool: refill failed; backing off');
          }
          this.failures += 1;
          this.lastFailureAt = performance.now();
          bucket.waiters.shift()?.(undefined);
        },
      )
      .finally(() => {
        bucket.inFlight -= 1;
        this.pump();
      });
    this.pump();
  }
}
