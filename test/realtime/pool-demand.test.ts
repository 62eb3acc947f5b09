import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { allocateSlots, DecayingCount, DemandModel } from '../../src/realtime/demand.js';
import { SecretPool } from '../../src/realtime/secret-pool.js';

const MINUTE = 60_000;

/** A monotonic clock the test moves by hand. */
function manualClock() {
  let now = 0;
  return { now: () => now, advance: (ms: number) => (now += ms) };
}

const total = (slots: Map<string, number>) => [...slots.values()].reduce((a, b) => a + b, 0);

describe('DecayingCount', () => {
  it('halves every half-life and reads a steady stream as its rate', () => {
    const count = new DecayingCount(10_000);
    count.add(0, 8);
    expect(count.valueAt(10_000)).toBeCloseTo(4);
    expect(count.valueAt(30_000)).toBeCloseTo(1);
    const stream = new DecayingCount(10_000);
    // 5 events a second for two minutes (12 half-lives): the rate settles at 5/s
    for (let t = 0; t <= 120_000; t += 200) stream.add(t);
    expect(stream.ratePerSecondAt(120_000)).toBeGreaterThan(4.8);
    expect(stream.ratePerSecondAt(120_000)).toBeLessThan(5.3);
  });
});

describe('DemandModel', () => {
  it('decays old requests on the injected clock', () => {
    const clock = manualClock();
    const demand = new DemandModel<string>({ halfLifeMs: 5 * MINUTE, maxConfigurations: 8, now: clock.now });
    for (let i = 0; i < 4; i++) demand.record('a', 'A');
    demand.record('b', 'B');
    expect(demand.snapshot().map((d) => d.key)).toEqual(['a', 'b']);
    clock.advance(10 * MINUTE);
    expect(demand.weightOf('a')).toBeCloseTo(1);
    expect(demand.weightOf('b')).toBeCloseTo(0.25);
    // b asked again now outweighs a's old requests
    demand.record('b', 'B');
    expect(demand.snapshot()[0]).toMatchObject({ key: 'b', config: 'B' });
  });

  it('tracks at most maxConfigurations, evicting the coldest', () => {
    const clock = manualClock();
    const demand = new DemandModel<number>({ halfLifeMs: MINUTE, maxConfigurations: 3, now: clock.now });
    demand.record('hot', 1, 10);
    demand.record('warm', 2, 5);
    demand.record('cold', 3, 1);
    for (let i = 0; i < 100; i++) demand.record(`tail-${i}`, i);
    expect(demand.size).toBe(3);
    const keys = demand.snapshot().map((d) => d.key);
    expect(keys.slice(0, 2)).toEqual(['hot', 'warm']);
    expect(keys).not.toContain('cold');
  });
});

describe('allocateSlots', () => {
  const rules = { total: 20, minWeight: 1.5, usesPerWeight: 100 };

  it('shares the pool in proportion to demand, to the last slot (largest remainder)', () => {
    const slots = allocateSlots(
      [
        { key: 'default', weight: 25 },
        { key: 'a', weight: 14 },
        { key: 'b', weight: 14 },
        { key: 'c', weight: 14 },
        { key: 'd', weight: 14 },
        { key: 'e', weight: 14 },
      ],
      rules,
    );
    expect(total(slots)).toBe(20);
    expect(slots.get('default')).toBe(5);
    for (const key of ['a', 'b', 'c', 'd', 'e']) expect([2, 3]).toContain(slots.get(key));
  });

  it('gives no slot below the threshold', () => {
    const slots = allocateSlots(
      [
        { key: 'hot', weight: 40 },
        { key: 'once', weight: 1 },
      ],
      rules,
    );
    expect(slots.has('once')).toBe(false);
    expect(slots.get('hot')).toBe(20);
  });

  it('caps each configuration at what it is expected to use: little demand leaves slots empty', () => {
    // 0.2 uses per unit of weight before a secret goes stale: hot (60) would use 12, the others 1
    const slots = allocateSlots(
      [
        { key: 'hot', weight: 60 },
        { key: 'lukewarm', weight: 4 },
        { key: 'mild', weight: 2 },
      ],
      { total: 20, minWeight: 1.5, usesPerWeight: 0.2 },
    );
    expect(Object.fromEntries(slots)).toEqual({ hot: 12, lukewarm: 1, mild: 1 });
    // with enough demand the same weights share all 20 in proportion
    const busy = allocateSlots(
      [
        { key: 'hot', weight: 60 },
        { key: 'lukewarm', weight: 4 },
        { key: 'mild', weight: 2 },
      ],
      { total: 20, minWeight: 1.5, usesPerWeight: 2 },
    );
    expect(Object.fromEntries(busy)).toEqual({ hot: 18, lukewarm: 1, mild: 1 });
  });
});

describe('SecretPool allocation (not started: no mint is ever called)', () => {
  const log = pino({ level: 'silent' });
  const poolWith = (clock: { now: () => number }) =>
    new SecretPool<string>({
      size: 10,
      minRemainingSeconds: 120,
      ttlSeconds: 600,
      refillPerSecond: 20,
      mint: () => Promise.reject(new Error('not started: never called')),
      upstreamWaitMs: () => 0,
      log,
      seed: { key: 'default', config: 'default' },
      demand: { halfLifeMs: 5 * MINUTE, maxConfigurations: 4, labelLimit: 2 },
      demandClock: clock.now,
    });

  it('re-allocates as demand moves, and stops refilling a configuration nobody asks for', () => {
    const clock = manualClock();
    const pool = poolWith(clock);
    for (let i = 0; i < 30; i++) pool.take('nba', 'nba');
    expect(pool.allocation.get('nba')).toBe(10);
    clock.advance(20 * MINUTE);
    for (let i = 0; i < 30; i++) pool.take('nfl', 'nfl');
    // nba's 30 requests are four half-lives old (worth 1.9): still warm, but only just
    expect(pool.allocation.get('nfl')).toBeGreaterThanOrEqual(9);
    expect(pool.allocation.get('nba') ?? 0).toBeLessThanOrEqual(1);
    clock.advance(10 * MINUTE);
    expect(pool.allocation.has('nba')).toBe(false);
    // nfl's 30 requests are now worth 7.5, about 8.3 uses before a secret goes stale: 9 slots, not 10
    expect(pool.allocation.get('nfl')).toBe(9);
  });

  it('never pools a configuration in default mode, and counts only the default there', () => {
    const clock = manualClock();
    const pool = new SecretPool<string>({
      size: 3,
      minRemainingSeconds: 120,
      ttlSeconds: 600,
      refillPerSecond: 20,
      mode: 'default',
      mint: () => Promise.reject(new Error('not started: never called')),
      upstreamWaitMs: () => 0,
      log,
      seed: { key: 'default', config: 'default' },
      demandClock: clock.now,
    });
    for (let i = 0; i < 30; i++) pool.take('nba', 'nba');
    pool.take('default', 'default');
    expect([...pool.allocation]).toEqual([['default', 3]]);
    expect(pool.stats).toMatchObject({ hits: 0, misses: 1 });
  });

  it('keeps metric labels bounded: at most labelLimit warm configurations, the rest as other', () => {
    const clock = manualClock();
    const pool = poolWith(clock);
    for (const key of ['a', 'b', 'c', 'd', 'e']) {
      for (let i = 0; i < 5; i++) pool.take(key, key);
    }
    for (let i = 0; i < 50; i++) pool.take(`tail-${i}`, 'tail');
    const rows = pool.labelStats();
    // Two labels (a, forgotten by the demand model once it tracked four others, handed its own to e).
    expect(rows.map((row) => row.configuration)).toEqual(['b', 'e', 'other']);
    expect(rows.reduce((sum, row) => sum + row.misses, 0)).toBe(75);
  });

  // Issue 16: the first warm configurations kept their labels forever, however cold they went.
  it('hands the labels on to what is popular now: a cold configuration’s label goes to a warm newcomer, its counts to other', () => {
    const clock = manualClock();
    const pool = poolWith(clock);
    for (const key of ['a', 'b']) {
      for (let i = 0; i < 5; i++) pool.take(key, key);
    }
    expect(pool.labelStats().map((row) => row.configuration)).toEqual(['a', 'b', 'other']);
    // Six half-lives: a and b are cold; c and d are what clients ask for now.
    clock.advance(30 * MINUTE);
    for (const key of ['c', 'd']) {
      for (let i = 0; i < 5; i++) pool.take(key, key);
    }
    const rows = pool.labelStats();
    expect(rows.map((row) => row.configuration).sort()).toEqual(['c', 'd', 'other']);
    // Every request is still counted once: sums over the metric never go down.
    expect(rows.reduce((sum, row) => sum + row.misses, 0)).toBe(20);
    expect(rows.find((row) => row.configuration === 'other')?.misses).toBe(10 + 2);
  });

  it('keeps a label while its configuration stays popular', () => {
    const clock = manualClock();
    const pool = poolWith(clock);
    for (const key of ['a', 'b']) {
      for (let i = 0; i < 20; i++) pool.take(key, key);
    }
    clock.advance(MINUTE);
    for (let i = 0; i < 5; i++) pool.take('c', 'c');
    expect(pool.labelStats().map((row) => row.configuration)).toEqual(['a', 'b', 'other']);
  });
});

describe('TOKEN_POOL_MODE', () => {
  const env = { OPENAI_API_KEY: 'sk-test-0123456789abcdefghij', ALLOWED_ORIGINS: 'https://www.espn.com' };

  it('is demand unless set to default, and refuses anything else by name', () => {
    expect(loadConfig(env).tokenPoolMode).toBe('demand');
    expect(loadConfig({ ...env, TOKEN_POOL_MODE: ' Default ' }).tokenPoolMode).toBe('default');
    expect(() => loadConfig({ ...env, TOKEN_POOL_MODE: 'sometimes' })).toThrow(ConfigError);
    expect(() => loadConfig({ ...env, TOKEN_POOL_MODE: 'sometimes' })).toThrow(/TOKEN_POOL_MODE must be demand or default/);
  });
});
