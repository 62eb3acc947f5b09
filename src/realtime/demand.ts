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

  const sum = open.reduce((s, d) => s + d.weight, 0);
  if (left <= 0 || sum <= 0) return slots;
  const quotas = open.map((d) => ({ key: d.key, quota: (left * d.weight) / sum }));
  let given = 0;
  for (const q of quotas) {
    const whole = Math.floor(q.quota);
    if (whole > 0) slots.set(q.key, whole);
    given += whole;
  }
  quotas.sort((a, b) => b.quota - Math.floor(b.quota) - (a.quota - Math.floor(a.quota)));
  for (const q of quotas.slice(0, left - given)) slots.set(q.key, (slots.get(q.key) ?? 0) + 1);
  return slots;
}
