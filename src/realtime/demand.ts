// Which session configurations clients ask for, and how many warm secrets each deserves.
// Pure bookkeeping on an injected monotonic clock: no timers, so tests drive it step by step.

/** A count that halves every `halfLifeMs` without being touched: evaluated lazily when read. */
export class DecayingCount {
  private value = 0;
  private at = 0;

  constructor(private readonly halfLifeMs: number) {}

  add(now: number, amount = 1): void {
    this.value = this.valueAt(now) + amount;
    this.at = now;
  }

  valueAt(now: number): number {
    if (this.value === 0) return 0;
    return this.value * 2 ** (-(now - this.at) / this.halfLifeMs);
  }

  /**
   * Events per second: a steady stream of r per second settles at r x halfLife / ln 2 (the mean
   * lifetime of one count), so that is what the count is divided by.
   */
  ratePerSecondAt(now: number): number {
    return this.valueAt(now) / (this.halfLifeMs / Math.LN2 / 1000);
  }
}

export interface DemandOptions {
  /** How fast old requests stop counting. */
  halfLifeMs: number;
  /** Configurations tracked at once; a new one evicts the coldest. */
  maxConfigurations: number;
  /** Monotonic milliseconds. */
  now: () => number;
}

export interface Demand<C> {
  key: string;
  config: C;
  /** Decayed request count. */
  weight: number;
}

/** A decaying request count per configuration key, for at most `maxConfigurations` keys. */
export class DemandModel<C> {
  private readonly counts = new Map<string, { config: C; count: DecayingCount }>();

  constructor(private readonly options: DemandOptions) {}

  /** One more request for `key` (worth `amount` requests: a boot-time seed may count for more). */
  record(key: string, config: C, amount = 1): void {
    const now = this.options.now();
    let entry = this.counts.get(key);
    if (!entry) {
      if (this.counts.size >= this.options.maxConfigurations) this.evictColdest(now);
      entry = { config, count: new DecayingCount(this.options.halfLifeMs) };
      this.counts.set(key, entry);
    }
    entry.count.add(now, amount);
  }

  has(key: string): boolean {
    return this.counts.has(key);
  }

  configOf(key: string): C | undefined {
    return this.counts.get(key)?.config;
  }

  weightOf(key: string): number {
    return this.counts.get(key)?.count.valueAt(this.options.now()) ?? 0;
  }

  /** Every tracked configuration with its current weight, hottest first. */
  snapshot(): Demand<C>[] {
    const now = this.options.now();
    return [...this.counts]
      .map(([key, { config, count }]) => ({ key, config, weight: count.valueAt(now) }))
      .sort((a, b) => b.weight - a.weight);
  }

  get size(): number {
    return this.counts.size;
  }

  private evictColdest(now: number): void {
    let coldest: string | undefined;
    let lowest = Number.POSITIVE_INFINITY;
    for (const [key, { count }] of this.counts) {
      const weight = count.valueAt(now);
      if (weight < lowest) {
        lowest = weight;
        coldest = key;
      }
    }
    if (coldest !== undefined) this.counts.delete(coldest);
  }
}

export interface AllocationRules {
  /** Warm secrets to share out. */
  total: number;
  /** A configuration with a smaller decayed count gets no slot (and so no refill). */
  minWeight: number;
  /**
   * Expected requests per unit of weight before a secret goes stale (usable life / mean lifetime
   * of a count): a configuration gets no more slots than it is expected to use, so the rest of the
   * pool goes to configurations that will use it instead of expiring.
   */
  usesPerWeight: number;
}

/**
 * Slots per configuration, proportional to weight (largest remainder), each capped at its expected
 * use, caps re-shared among the others. Keys that get nothing are absent.
 */
export function allocateSlots(demands: readonly { key: string; weight: number }[], rules: AllocationRules): Map<string, number> {
  const slots = new Map<string, number>();
  let open = demands.filter((d) => d.weight >= rules.minWeight);
  let left = rules.total;
  const capOf = (weight: number) => Math.max(1, Math.ceil(weight * rules.usesPerWeight));

  // Water-filling: whoever's proportional share reaches its cap takes the cap and leaves the rest.
  for (;;) {
    const sum = open.reduce((s, d) => s + d.weight, 0);
    if (left <= 0 || sum <= 0) break;
    const capped = open.filter((d) => (left * d.weight) / sum >= capOf(d.weight));
    if (capped.length === 0) break;
    for (const d of capped) {
      const cap = Math.min(capOf(d.weight), left);
      slots.set(d.key, cap);
      left -= cap;
    }
    open = open.filter((d) => !capped.includes(d));
  }

  for (const [key, share] of shareOut(left, open)) slots.set(key, share);
  return slots;
}

/**
 * `total` shared in proportion to weight, to the last unit (largest remainder). Keys that get
 * nothing are absent.
 */
function shareOut(total: number, demands: readonly { key: string; weight: number }[]): Map<string, number> {
  const shares = new Map<string, number>();
  const sum = demands.reduce((s, d) => s + d.weight, 0);
  if (total <= 0 || sum <= 0) return shares;
  const quotas = demands.map((d) => ({ key: d.key, quota: (total * d.weight) / sum }));
  let given = 0;
  for (const q of quotas) {
    const whole = Math.floor(q.quota);
    if (whole > 0) shares.set(q.key, whole);
    given += whole;
  }
  quotas.sort((a, b) => b.quota - Math.floor(b.quota) - (a.quota - Math.floor(a.quota)));
  for (const q of quotas.slice(0, total - given)) shares.set(q.key, (shares.get(q.key) ?? 0) + 1);
  return shares;
}

/** P(X = k) for X ~ Poisson(mean). */
function poissonAt(mean: number, k: number): number {
  let p = Math.exp(-mean);
  for (let i = 1; i <= k; i++) p *= mean / i;
  return p;
}

/**
 * Slots plus room for the refills on their way, so that the slots count secrets ready, not ready or
 * coming: a slot no longer stands empty for a round trip each time its secret is taken.
 * `onTheirWay` is the mean number of refills on their way over all demand (drain rate x
 * replacement time); the configurations with slots get room for their weight's part of it (rounded
 * over the lot), one refill at a time, each where it saves the most misses. A configuration's
 * refills on their way are Poisson with its part of the mean, and a request finds it empty when as
 * many are on their way as it has room for, so one more saves weight x P(on their way = its room).
 */
export function withRoomForRefills(
  slots: ReadonlyMap<string, number>,
  demands: readonly { key: string; weight: number }[],
  onTheirWay: number,
): Map<string, number> {
  const targets = new Map(slots);
  const all = demands.reduce((s, d) => s + d.weight, 0);
  if (all <= 0 || onTheirWay <= 0) return targets;
  const slotted = demands
    .filter((d) => slots.has(d.key) && d.weight > 0)
    .map((d) => ({ key: d.key, weight: d.weight, mean: (onTheirWay * d.weight) / all }));
  let extra = Math.round(slotted.reduce((s, d) => s + d.mean, 0));
  for (; extra > 0; extra--) {
    let best: (typeof slotted)[number] | undefined;
    let saves = -1;
    for (const d of slotted) {
      const value = d.weight * poissonAt(d.mean, targets.get(d.key) ?? 0);
      if (value > saves) {
        saves = value;
        best = d;
      }
    }
    if (!best) break;
    targets.set(best.key, (targets.get(best.key) ?? 0) + 1);
  }
  return targets;
}
