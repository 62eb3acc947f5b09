import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { createRedis as createClient, type RedisClient } from '../../src/redis.js';
import { RedisLedger } from '../../src/usage/redis-ledger.js';
import { LogCapture } from '../support/app.js';
import { requireCommand } from '../support/commands.js';
import { RedisServer } from '../support/redis-server.js';
import { waitUntil } from '../support/wait.js';

requireCommand('redis-server', 'apt-get install redis-server');

/** The service's own client settings (fail fast, reconnect forever) on one Redis server. */
async function createRedis(url: string): Promise<RedisClient> {
  const redis = await createClient({ redisUrl: url, redisClusterNodes: undefined });
  if (!redis) throw new Error('no Redis client');
  return redis;
}

const MINT = { mints: 1, spendNano: 0 };
const SECRET = { mints: 1, spendNano: 500_000_000 };
const HOUR = 3_600_000;

/** One replica: its own Redis connection, ledger and log. */
interface Replica {
  redis: RedisClient;
  ledger: RedisLedger;
  logs: LogCapture;
}

describe('RedisLedger: windows shared by replicas', () => {
  let server: RedisServer;
  let inspect: RedisClient;
  const replicas: Replica[] = [];

  async function replica(options: { capacity?: number } = {}): Promise<Replica> {
    const redis = await createRedis(server.url);
    const logs = new LogCapture();
    const config = loadConfig({ OPENAI_API_KEY: 'sk-test', ALLOWED_ORIGINS: 'https://www.espn.com', LOG_LEVEL: 'debug' });
    const ledger = new RedisLedger(redis, { log: createLogger(config, logs), ...options });
    await redis.connect();
    await waitUntil(async () => {
      await ledger.flush();
      return ledger.store === 'redis';
    }, 'the ledger on Redis');
    const made = { redis, ledger, logs };
    replicas.push(made);
    return made;
  }

  beforeAll(async () => {
    server = await RedisServer.start();
    inspect = await createRedis(server.url);
    await inspect.connect();
  });

  afterEach(async () => {
    for (const { ledger, redis } of replicas.splice(0)) {
      await ledger.close();
      redis.disconnect();
    }
    if (inspect.status !== 'ready') {
      inspect.disconnect();
      inspect = await createRedis(server.url);
      await inspect.connect();
    }
    await inspect.flushall();
  });

  afterAll(async () => {
    inspect?.disconnect();
    await server?.stop();
  });

  it('one daily quota across two replicas, exact under concurrency', async () => {
    const a = await replica();
    const b = await replica();
    const results = await Promise.all(
      Array.from({ length: 40 }, (_, i) => (i % 2 === 0 ? a : b).ledger.admit('ip:203.0.113.7', MINT, { clientMints: 10 }, Date.now())),
    );
    expect(results.filter((r) => r.admitted)).toHaveLength(10);
    expect(results.filter((r) => !r.admitted && r.refusal === 'quota')).toHaveLength(30);
    const refused = await b.ledger.admit('ip:203.0.113.7', MINT, { clientMints: 10 }, Date.now());
    expect(refused).toMatchObject({ admitted: false, refusal: 'quota', window: { mints: 10 } });
    if (refused.admitted || refused.refusal === 'full') throw new Error('expected a quota refusal');
    // the window turns a day after the first mint, as Redis keeps it
    expect(refused.window.resetAt - Date.now()).toBeGreaterThan(86_390_000);
    expect(await inspect.hget('parker-usage:{c:ip:203.0.113.7}:day', 'm')).toBe('10');
  });

  it('spend caps across replicas: a client\'s 429 spend, the whole service\'s budget', async () => {
    const a = await replica();
    const b = await replica();
    const limits = { clientSpendNano: 1_000_000_000, globalSpendNano: 2_500_000_000 };
    const now = Date.now();
    expect(await a.ledger.admit('user:1', SECRET, limits, now)).toMatchObject({ admitted: true });
    expect(await b.ledger.admit('user:1', SECRET, limits, now)).toMatchObject({ admitted: true, client: { spendUsd: 1 } });
    expect(await a.ledger.admit('user:1', SECRET, limits, now)).toMatchObject({ admitted: false, refusal: 'spend', window: { spendUsd: 1 } });
    // a call's usage on replica b counts for the global cap seen by replica a
    await b.ledger.charge('user:2', { mints: 0, spendNano: 1_200_000_000 }, now);
    expect(await a.ledger.admit('user:3', SECRET, limits, now)).toMatchObject({ admitted: true, global: { spendNano: 2_700_000_000 } });
    expect(await a.ledger.admit('user:4', SECRET, limits, now)).toMatchObject({ admitted: false, refusal: 'budget' });
    // the refused client's and the budget-refused client's counts are given back
    await a.ledger.flush();
    const { clients, global } = await b.ledger.windows(['user:1', 'user:4'], now);
    expect(clients.get('user:1')).toMatchObject({ mints: 2, spendNano: 1_000_000_000 });
    expect(clients.get('user:4')).toMatchObject({ mints: 0, spendNano: 0 });
    expect(global).toMatchObject({ spendNano: 2_700_000_000 });
  });

  it('limits that are off cost no round trip: their counts reach Redis in the background', async () => {
    const a = await replica();
    const b = await replica();
    const before = Number((await inspect.info('stats')).match(/total_commands_processed:(\d+)/)?.[1]);
    for (let i = 0; i < 50; i++) a.ledger.record(`ip:198.51.100.${i}`, MINT, Date.now());
    const after = Number((await inspect.info('stats')).match(/total_commands_processed:(\d+)/)?.[1]);
    expect(after - before).toBe(1); // the INFO itself
    await a.ledger.flush();
    expect((await b.ledger.windows(['ip:198.51.100.3'], Date.now())).clients.get('ip:198.51.100.3')).toMatchObject({ mints: 1 });
    expect((await b.ledger.windows([], Date.now())).global.mints).toBe(50);
  });

  it('every key is hash-tagged: one client\'s window, or the global ones, never a mix', async () => {
    const a = await replica();
    await a.ledger.admit('user:{odd}name', SECRET, { clientMints: 5, globalSpendNano: 10e9 }, Date.now());
    a.ledger.countRefusal('quota', Date.now());
    await a.ledger.snapshot(Date.now(), 100);
    const keys = await inspect.keys('*');
    expect(keys.length).toBeGreaterThanOrEqual(5);
    for (const key of keys) expect(key).toMatch(/^parker-usage:\{(g|c:[^}]*)\}/);
    expect(keys).toContain('parker-usage:{c:user:{odd}name}:day');
  });

  it('Redis killed mid-count: counts go on locally from the last totals (no cap lifted), then merge back into the restarted, empty Redis', async () => {
    const a = await replica();
    const limits = { clientMints: 5 };
    for (let i = 0; i < 3; i++) expect((await a.ledger.admit('user:k', MINT, limits, Date.now())).admitted).toBe(true);

    await server.stop();
    await waitUntil(() => a.ledger.store === 'fallback', 'the ledger counting locally');
    expect((await a.ledger.admit('user:k', MINT, limits, Date.now())).admitted).toBe(true);
    expect((await a.ledger.admit('user:k', MINT, limits, Date.now())).admitted).toBe(true);
    expect(await a.ledger.admit('user:k', MINT, limits, Date.now())).toMatchObject({ admitted: false, refusal: 'quota', window: { mints: 5 } });
    // a client this replica never saw is still limited locally, never unlimited
    for (let i = 0; i < 5; i++) expect((await a.ledger.admit('user:new', MINT, limits, Date.now())).admitted).toBe(true);
    expect((await a.ledger.admit('user:new', MINT, limits, Date.now())).admitted).toBe(false);
    expect(a.logs.find('usage ledger: Redis unreachable, counting locally until it returns (caps still hold)')).toHaveLength(1);

    await server.resume();
    await waitUntil(async () => {
      await a.ledger.flush();
      return a.ledger.store === 'redis';
    }, 'the ledger back on Redis');
    await a.ledger.flush();
    // a replica that never saw this client finds the whole count in Redis
    const b = await replica();
    expect(await b.ledger.admit('user:k', MINT, limits, Date.now())).toMatchObject({ admitted: false, refusal: 'quota', window: { mints: 5 } });
    expect(await b.ledger.admit('user:new', MINT, limits, Date.now())).toMatchObject({ admitted: false, refusal: 'quota' });
    expect(Number(await inspect.pttl('parker-usage:{c:user:k}:day'))).toBeGreaterThan(86_000_000);
  });

  it('a window Redis lost without a disconnect (evicted, flushed) starts again from what this replica knew', async () => {
    const a = await replica();
    for (let i = 0; i < 3; i++) await a.ledger.admit('user:e', SECRET, { clientMints: 3, clientSpendNano: 10e9 }, Date.now());
    await inspect.flushall();
    expect(await a.ledger.admit('user:e', SECRET, { clientMints: 3, clientSpendNano: 10e9 }, Date.now())).toMatchObject({
      admitted: false,
      refusal: 'quota',
      window: { mints: 3, spendNano: 1_500_000_000 },
    });
    expect(await inspect.hgetall('parker-usage:{c:user:e}:day')).toEqual({ m: '3', s: '1500000000' });
  });

  it('a frozen Redis (commands time out) costs one timeout, then counts locally', async () => {
    const a = await replica();
    await a.ledger.admit('user:f', MINT, { clientMints: 2 }, Date.now());
    server.freeze();
    try {
      const started = performance.now();
      expect((await a.ledger.admit('user:f', MINT, { clientMints: 2 }, Date.now())).admitted).toBe(true);
      expect(a.ledger.store).toBe('fallback');
      expect(await a.ledger.admit('user:f', MINT, { clientMints: 2 }, Date.now())).toMatchObject({ admitted: false, refusal: 'quota' });
      expect(performance.now() - started).toBeLessThan(1_500);
    } finally {
      server.thaw();
    }
  });

  it('the report: top clients by spend then mints and the hourly history, the same from both replicas', async () => {
    const a = await replica();
    const b = await replica();
    const now = Date.now();
    await a.ledger.admit('mints-3', MINT, { clientMints: 10 }, now);
    await b.ledger.admit('mints-3', MINT, { clientMints: 10 }, now);
    await a.ledger.admit('mints-3', MINT, { clientMints: 10 }, now);
    await b.ledger.charge('spend-2', { mints: 0, spendNano: 900_000_000 }, now);
    a.ledger.record('spend-1', SECRET, now);
    a.ledger.countRefusal('quota', now);
    b.ledger.countRefusal('quota', now);
    b.ledger.countRefusal('spend', now - HOUR);
    await a.ledger.flush();
    await b.ledger.flush();
    const fromA = await a.ledger.snapshot(now, 100);
    const fromB = await b.ledger.snapshot(now, 100);
    expect(fromA.store).toBe('redis');
    const rows = (snapshot: typeof fromA) => snapshot.clients.map((row) => [row.client, row.usage.mints, row.usage.spendNano]);
    expect(rows(fromA)).toEqual([
      ['spend-2', 0, 900_000_000],
      ['spend-1', 1, 500_000_000],
      ['mints-3', 3, 0],
    ]);
    expect(rows(fromB)).toEqual(rows(fromA));
    expect(fromA.global).toMatchObject({ mints: 4, spendNano: 1_400_000_000 });
    expect(fromA.hourly).toHaveLength(24);
    expect(fromA.hourly[23]).toMatchObject({ mints: 4, spendNano: 1_400_000_000, refusals: { quota: 2 } });
    expect(fromA.hourly[22]?.refusals).toEqual({ spend: 1 });
    expect(fromB.hourly).toEqual(fromA.hourly);
  });

  it('the report while Redis is away: this replica\'s own counts, flagged fallback', async () => {
    const a = await replica();
    await a.ledger.admit('user:s', SECRET, { clientMints: 10 }, Date.now());
    a.ledger.countRefusal('quota', Date.now());
    await server.stop();
    await waitUntil(() => a.ledger.store === 'fallback', 'the ledger counting locally');
    const snapshot = await a.ledger.snapshot(Date.now(), 100);
    expect(snapshot.store).toBe('fallback');
    expect(snapshot.clients.map((row) => [row.client, row.usage.mints, row.usage.spendNano])).toEqual([['user:s', 1, 500_000_000]]);
    expect(snapshot.hourly[23]?.refusals).toEqual({ quota: 1 });
    await server.resume();
  });
});
