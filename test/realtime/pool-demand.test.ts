import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import type { MintedSecret } from '../../src/openai/client.js';
import { allocateSlots, DecayingCount, DemandModel, withRoomForRefills } from '../../src/realtime/demand.js';
import { SecretPool } from '../../src/realtime/secret-pool.js';
import { ManualClock } from '../support/app.js';
import { waitUntil } from '../support/wait.js';

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

describe('withRoomForRefills', () => {
  // The six hot configurations of the realistic bench: requests per second as weights, 20 slots in proportion.
  const demands = [
    { key: 'default', weight: 5 },
    { key: 'a', weight: 4.2 },
    { key: 'b', weight: 3.5 },
    { key: 'c', weight: 2.8 },
    { key: 'd', weight: 2.1 },
    { key: 'e', weight: 1.4 },
  ];
  const slots = new Map([
    ['default', 5],
    ['a', 4],
    ['b', 4],
    ['c', 3],
    ['d', 2],
    ['e', 2],
  ]);

  it('adds room for the refills on their way where each saves the most misses, not in proportion', () => {
    // 19 requests/s, 300 ms to replace a secret: 5.7 refills on their way, so 6 more
    const targets = withRoomForRefills(slots, demands, 5.7);
    expect(total(targets)).toBe(26);
    // in proportion the largest would take two (7,5,5,4,3,2); the small ones run dry sooner
    expect(Object.fromEntries(targets)).toEqual({ default: 6, a: 5, b: 5, c: 4, d: 3, e: 3 });
  });

  it('adds nothing while under half a refill is on its way (a quiet pool stays at its slots)', () => {
    expect(withRoomForRefills(slots, demands, 0.4)).toEqual(slots);
    expect(withRoomForRefills(slots, demands, 0)).toEqual(slots);
  });

  it('counts only the refills of configurations with slots', () => {
    // half the requests are for a tail with no slot: its refills are not pooled, so no room for them
    const withTail = [...demands, { key: 'tail', weight: 19 }];
    const targets = withRoomForRefills(slots, withTail, 12);
    expect(total(targets)).toBe(26);
    expect(targets.has('tail')).toBe(false);
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

/** A mint the test answers by hand: each call waits until the test resolves it. */
function handMint() {
  const calls: { config: string; resolve: () => void }[] = [];
  let minted = 0;
  const mint = (config: string) =>
    new Promise<MintedSecret>((resolve) => {
      calls.push({
        config,
        resolve: () => resolve({ value: `ek_test_${minted++}`, expiresAt: Math.floor(Date.now() / 1000) + 600, sessionId: 'sess' }),
      });
    });
  /** Resolves every call not yet resolved, and lets the pool see the answers. */
  const answerAll = async (from: number) => {
    for (const call of calls.slice(from)) call.resolve();
    await new Promise((resolve) => setImmediate(resolve));
  };
  return { calls, mint, answerAll };
}

describe('SecretPool refills (mints answered by hand, on a manual demand clock)', () => {
  const log = pino({ level: 'silent' });
  const pools: SecretPool<string>[] = [];
  const poolWith = (
    clock: ManualClock,
    mint: (config: string) => Promise<MintedSecret>,
    size: number,
    upstreamWaitMs: () => number = () => 0,
  ) => {
    const pool = new SecretPool<string>({
      size,
      minRemainingSeconds: 120,
      ttlSeconds: 600,
      // 10 ms apart in real time: launches are awaited as events, never timed
      refillPerSecond: 100,
      mint,
      upstreamWaitMs,
      log,
      seed: { key: 'default', config: 'default' },
      demandClock: clock.now,
    });
    pools.push(pool);
    return pool;
  };
  afterEach(() => {
    for (const pool of pools.splice(0)) pool.close();
  });

  it('makes room for the refills on their way: the size counts secrets ready', async () => {
    const clock = new ManualClock(0);
    const hand = handMint();
    const pool = poolWith(clock, hand.mint, 4);
    pool.start();
    await waitUntil(() => hand.calls.length === 4, 'pool filling');
    // no refill has landed yet, so no replacement time is known: the size is all there is
    expect(pool.expectedRefillsOnTheirWay).toBe(0);
    clock.advance(300);
    await hand.answerAll(0);
    expect(pool.stats.size).toBe(4);

    // 10 requests at once drain the pool at 3.5/s: with 300 ms to replace a secret, 1 on its way
    for (let i = 0; i < 10; i++) pool.take('default', 'default');
    expect(pool.expectedRefillsOnTheirWay).toBeCloseTo(1.04, 2);
    expect(pool.allocation.get('default')).toBe(5);
    // the 4 taken are replaced, and one more is minted for the refills on their way
    await waitUntil(() => hand.calls.length === 9, 'refills started');
    clock.advance(300);
    await hand.answerAll(4);
    expect(pool.stats.size).toBe(5);
    // 5 held, 5 wanted: nothing more starts (pump only launches below the target)
    expect(hand.calls).toHaveLength(9);
  });

  it('refills first the configuration whose secrets last the shortest at its request rate', async () => {
    const clock = new ManualClock(0);
    const hand = handMint();
    const pool = poolWith(clock, hand.mint, 6);
    // asked for before the pool starts: nba 30 times, nfl 5 (with the boot credit of the default
    // session, 3, that is slots nba 5, nfl 1, default none)
    for (let i = 0; i < 30; i++) pool.take('nba', 'nba');
    for (let i = 0; i < 5; i++) pool.take('nfl', 'nfl');
    expect(Object.fromEntries(pool.allocation)).toEqual({ nba: 5, nfl: 1 });
    pool.start();
    await waitUntil(() => hand.calls.length === 6, 'pool filling');
    // Both hold none: nba, asked for most, first. Then nfl, holding none, runs dry before nba
    // holding one. (Furthest below its slots first, nba would have taken the first five.)
    expect(hand.calls.map((call) => call.config)).toEqual(['nba', 'nfl', 'nba', 'nba', 'nba', 'nba']);
  });

  it("counts a refill's wait for its turn under the cap as part of the replacement time", async () => {
    const clock = new ManualClock(0);
    const hand = handMint();
    const pool = poolWith(clock, hand.mint, 2);
    pool.start();
    await waitUntil(() => hand.calls.length === 2, 'pool filling');
    clock.advance(300);
    await hand.answerAll(0);
    // every refill so far took 300 ms
    pool.take('default', 'default');
    pool.take('default', 'default');
    // the second replacement waits for its turn (10 ms of real time): on the demand clock, 50 ms
    clock.advance(50);
    await waitUntil(() => hand.calls.length === 4, 'replacements started');
    clock.advance(250);
    const before = pool.expectedRefillsOnTheirWay;
    expect(before).toBeGreaterThan(0);
    // both secrets were replaced 300 ms after they left, not 250 ms after the second started
    await hand.answerAll(2);
    expect(pool.expectedRefillsOnTheirWay).toBeCloseTo(before, 9);
  });

  it('does not count a secret nobody replaces (taken while its configuration held more than its target)', async () => {
    const clock = new ManualClock(0);
    const hand = handMint();
    const pool = poolWith(clock, hand.mint, 1);
    pool.start();
    await waitUntil(() => hand.calls.length === 1, 'pool filling');
    clock.advance(300);
    await hand.answerAll(0);
    // a burst of 20 requests: room for a refill on its way on top of the 1 slot (at most the size)
    for (let i = 0; i < 20; i++) pool.take('default', 'default');
    expect(pool.allocation.get('default')).toBe(2);
    await waitUntil(() => hand.calls.length === 3, 'replacement and room filled');
    clock.advance(300);
    await hand.answerAll(1);
    expect(pool.stats.size).toBe(2);
    // a minute later the burst is forgotten: the target is back to 1, and 2 are held
    clock.advance(60_000);
    expect(pool.allocation.get('default')).toBe(1);
    // Nothing to await: the pool re-allocates at most every 100 ms of real time.
    await new Promise((resolve) => setTimeout(resolve, 150));
    pool.take('default', 'default');
    clock.advance(1000);
    // only this one leaves the configuration below its target: it alone is replaced
    pool.take('default', 'default');
    await waitUntil(() => hand.calls.length === 4, 'the one replacement');
    clock.advance(300);
    const before = pool.expectedRefillsOnTheirWay;
    expect(before).toBeGreaterThan(0);
    await hand.answerAll(3);
    // replaced 300 ms after it left, like every refill before: not 1.3 s after the first of the two
    expect(pool.expectedRefillsOnTheirWay).toBeCloseTo(before, 12);
  });

  it('does not count a wait for the breaker (or budget) as replacement time', async () => {
    const clock = new ManualClock(0);
    const hand = handMint();
    let blocked = false;
    const pool = poolWith(clock, hand.mint, 1, () => (blocked ? 5 : 0));
    pool.start();
    await waitUntil(() => hand.calls.length === 1, 'pool filling');
    clock.advance(300);
    await hand.answerAll(0);
    blocked = true;
    pool.take('default', 'default');
    // a minute of outage on the demand clock, then OpenAI may be called again
    clock.advance(60_000);
    const before = pool.expectedRefillsOnTheirWay;
    blocked = false;
    await waitUntil(() => hand.calls.length === 2, 'refill after the outage');
    clock.advance(300);
    await hand.answerAll(1);
    // the refill took 300 ms once it could start: the minute of outage is not part of it
    expect(pool.expectedRefillsOnTheirWay).toBeCloseTo(before, 9);
  });
});
