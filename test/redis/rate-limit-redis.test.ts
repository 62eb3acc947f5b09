import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOpenAI } from '../support/fake-openai.js';
import { buildTestApp, expectEnvelope, SITE_ORIGIN, type TestApp } from '../support/app.js';
import { requireCommand } from '../support/commands.js';
import { REDIS_BACKENDS, type RedisBackend } from '../support/redis-backends.js';
import { RedisServer } from '../support/redis-server.js';
import { waitUntil } from '../support/wait.js';

requireCommand('redis-server', 'apt-get install redis-server');
requireCommand('redis-cli', 'apt-get install redis-tools');

describe.each(REDIS_BACKENDS)('rate limits shared in Redis across replicas ($name)', (kind) => {
  let redis: RedisBackend;
  let fake: FakeOpenAI;
  let a: TestApp;
  let b: TestApp;
  /** A replica that boots while Redis is down. */
  let late: TestApp | undefined;

  const mint = (t: TestApp, ip: string) =>
    t.app.inject({ method: 'POST', url: '/v1/realtime/token', remoteAddress: ip, headers: { origin: SITE_ORIGIN } });
  const store = async (t: TestApp) =>
    (await t.app.inject({ method: 'GET', url: '/healthz' })).json<{ rate_limit_store: string }>().rate_limit_store;

  beforeAll(async () => {
    redis = await kind.start();
    fake = await FakeOpenAI.start();
    a = await buildTestApp(fake, redis.env);
    b = await buildTestApp(fake, redis.env);
    await waitUntil(async () => (await store(a)) === 'redis' && (await store(b)) === 'redis', 'both replicas on Redis');
  });

  afterAll(async () => {
    await a?.app.close();
    await b?.app.close();
    await late?.app.close();
    await fake?.close();
    await redis?.close();
  });

  it('two replicas share one limit per client: 10 across both, then 429 on either', async () => {
    for (let i = 0; i < 10; i++) {
      expect((await mint(i % 2 === 0 ? a : b, '198.51.100.1')).statusCode).toBe(200);
    }
    expectEnvelope(await mint(a, '198.51.100.1'), 429);
    expectEnvelope(await mint(b, '198.51.100.1'), 429);
    expect(await redis.keys('parker-rl:*')).toContain('parker-rl:{m:ip:198.51.100.1}');
  });

  it('keeps answering on in-process limits while Redis is down, logging the switch once', async () => {
    await redis.stop();
    await expect.poll(() => store(a)).toBe('fallback');
    for (let i = 0; i < 10; i++) expect((await mint(a, '198.51.100.2')).statusCode).toBe(200);
    // still limited (never unlimited), and never a 500
    expectEnvelope(await mint(a, '198.51.100.2'), 429);
    expect(a.logs.find('rate limit: Redis unreachable, counting in-process until it returns')).toHaveLength(1);
    const health = await a.app.inject({ method: 'GET', url: '/healthz' });
    expect(health.statusCode).toBe(200);
    // a replica that boots now answers on in-process limits too
    late = await buildTestApp(fake, redis.env);
    expect(await store(late)).toBe('fallback');
    expect((await mint(late, '198.51.100.4')).statusCode).toBe(200);
  });

  it('goes back to the shared counters when Redis returns', async () => {
    await redis.resume();
    await expect.poll(() => store(a), { timeout: 10_000 }).toBe('redis');
    await expect.poll(() => store(b), { timeout: 10_000 }).toBe('redis');
    // the one that booted during the outage joins too
    await expect.poll(() => store(late as TestApp), { timeout: 10_000 }).toBe('redis');
    for (let i = 0; i < 5; i++) {
      expect((await mint(a, '198.51.100.3')).statusCode).toBe(200);
      expect((await mint(b, '198.51.100.3')).statusCode).toBe(200);
    }
    expectEnvelope(await mint(a, '198.51.100.3'), 429);
    // each switch logged once: up at boot, down, up (a cluster settling after its restart may flap once more)
    const ups = a.logs.find('rate limit: counters shared in Redis').length;
    const downs = a.logs.find('rate limit: Redis unreachable, counting in-process until it returns').length;
    expect(ups).toBeGreaterThanOrEqual(2);
    expect(ups).toBe(downs + 1);
  });

  it('two replicas share one global budget in Redis: 6 across both, then 503 on either', async () => {
    await redis.flush();
    const env = { ...redis.env, GLOBAL_MINTS_PER_MINUTE: '6', GLOBAL_MINTS_PER_DAY: '1000' };
    const budgetFake = await FakeOpenAI.start();
    const c = await buildTestApp(budgetFake, env);
    const d = await buildTestApp(budgetFake, env);
    try {
      await waitUntil(async () => (await store(c)) === 'redis' && (await store(d)) === 'redis', 'both replicas on Redis');
      const mintFrom = (t: TestApp, i: number) => mint(t, `198.51.101.${i}`);
      for (let i = 0; i < 6; i++) expect((await mintFrom(i % 2 === 0 ? c : d, i)).statusCode).toBe(200);
      expect(expectEnvelope(await mintFrom(c, 50), 503).error.message).toContain('budget');
      expect(expectEnvelope(await mintFrom(d, 51), 503).error.message).toContain('budget');
      expect(budgetFake.mintRequests).toHaveLength(6);
      // each replica warned once at 80 % (5 of 6): the warning is per replica, the count is shared
      const warned = [c, d].map((t) => t.logs.find('global minute budget 80 % used').length);
      expect(warned.reduce((x, y) => x + y)).toBeGreaterThanOrEqual(1);
      expect(Math.max(...warned)).toBe(1);
    } finally {
      await c.app.close();
      await d.app.close();
      await budgetFake.close();
    }
  });
});

describe('Redis frozen, then back (SIGSTOP / SIGCONT)', () => {
  it('counts in-process while frozen and returns to Redis with the first answer, though the connection never dropped', async () => {
    const redis = await RedisServer.start();
    const fake = await FakeOpenAI.start();
    const t = await buildTestApp(fake, { REDIS_URL: redis.url, RATE_LIMIT_PER_MINUTE: '100' });
    try {
      const store = async () => (await t.app.inject({ method: 'GET', url: '/healthz' })).json<{ rate_limit_store: string }>().rate_limit_store;
      const mint = () => t.app.inject({ method: 'POST', url: '/v1/realtime/token', remoteAddress: '198.51.100.9', headers: { origin: SITE_ORIGIN } });
      await waitUntil(async () => (await store()) === 'redis', 'the replica on Redis');
      redis.freeze();
      // a command times out (500 ms): the request is still answered, counted in-process
      expect((await mint()).statusCode).toBe(200);
      expect(await store()).toBe('fallback');
      redis.thaw();
      await waitUntil(async () => {
        expect((await mint()).statusCode).toBe(200);
        return (await store()) === 'redis';
      }, 'the store to return to Redis');
      const metrics = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
      expect(metrics).toContain('rate_limit_store_mode{mode="redis"} 1');
    } finally {
      await t.app.close();
      await fake.close();
      await redis.stop();
    }
  });
});

describe('a replica that boots before Redis', () => {
  it('answers on in-process limits, then joins Redis when it comes up', async () => {
    const redis = await RedisServer.reserve();
    const fake = await FakeOpenAI.start();
    const t = await buildTestApp(fake, { REDIS_URL: redis.url });
    try {
      const store = async () => (await t.app.inject({ method: 'GET', url: '/healthz' })).json<{ rate_limit_store: string }>().rate_limit_store;
      expect(await store()).toBe('fallback');
      expect((await t.app.inject({ method: 'POST', url: '/v1/realtime/token', headers: { origin: SITE_ORIGIN } })).statusCode).toBe(200);
      await redis.resume();
      await waitUntil(async () => (await store()) === 'redis', 'the replica to join Redis');
    } finally {
      await t.app.close();
      await fake.close();
      await redis.stop();
    }
  });
});
