import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildTestApp, expectEnvelope, ManualClock, SITE_ORIGIN, type Env, type TestApp } from '../support/app.js';
import { callIdOf, endCall, postSdp } from '../support/calls.js';
import { FakeOpenAI } from '../support/fake-openai.js';
import { REDIS_BACKENDS, type RedisBackend } from '../support/redis-backends.js';
import { RedisServer } from '../support/redis-server.js';
import { requireCommand } from '../support/commands.js';
import { waitUntil } from '../support/wait.js';

requireCommand('redis-server', 'apt-get install redis-server');
requireCommand('redis-cli', 'apt-get install redis-tools');

interface RedisHealth {
  topology: 'single' | 'cluster';
  mode: 'redis' | 'fallback';
  since: string;
  lost_writes_possible: boolean;
  note?: string;
}

async function redisHealth(t: TestApp): Promise<RedisHealth> {
  const health = (await t.app.inject({ method: 'GET', url: '/healthz' })).json<{ rate_limit_store: string; redis?: RedisHealth }>();
  if (!health.redis) throw new Error('no redis field on /healthz');
  return health.redis;
}

/** On Redis, and everything this replica kept through the last outage is back in it. */
const settled = async (t: TestApp) => {
  const redis = await redisHealth(t);
  return redis.mode === 'redis' && !redis.lost_writes_possible;
};

describe.each(REDIS_BACKENDS)('Redis restarts empty ($name)', (kind) => {
  let backend: RedisBackend;
  let fake: FakeOpenAI;
  let clock: ManualClock;
  const apps: TestApp[] = [];

  /** Replicas on one Redis, one fake OpenAI and one clock. */
  async function replicas(count: number, env: Env = {}): Promise<TestApp[]> {
    const built: TestApp[] = [];
    for (let i = 0; i < count; i++) {
      const t = await buildTestApp(fake, { ...backend.env, MAX_CALL_SECONDS: '10', OPENAI_TIMEOUT_MS: '1000', ...env }, { now: clock.now, random: () => 0 });
      apps.push(t);
      built.push(t);
    }
    await waitUntil(async () => (await Promise.all(built.map(settled))).every(Boolean), 'every replica on Redis', 15_000);
    return built;
  }

  async function outage(replicasOf: TestApp[]): Promise<void> {
    await backend.stop();
    await waitUntil(async () => (await Promise.all(replicasOf.map(redisHealth))).every((r) => r.mode === 'fallback'), 'fallback');
  }

  async function restoreEmpty(replicasOf: TestApp[]): Promise<void> {
    await backend.resume();
    await waitUntil(async () => (await Promise.all(replicasOf.map(settled))).every(Boolean), 'every replica back and re-registered', 15_000);
  }

  beforeAll(async () => {
    backend = await kind.start();
  });

  beforeEach(async () => {
    fake = await FakeOpenAI.start();
    clock = new ManualClock();
    await backend.flush();
  });

  afterEach(async () => {
    for (const t of apps.splice(0)) await t.app.close();
    await fake.close();
  });

  afterAll(async () => {
    await backend?.close();
  });

  it('a call started before the restart keeps its slot and is hung up at its deadline after it, by another replica', async () => {
    const [a, b] = (await replicas(2, { MAX_CONCURRENT_CALLS_PER_CLIENT: '1' })) as [TestApp, TestApp];
    const call = await postSdp(a.app);
    expect(call.statusCode).toBe(201);
    await outage([a, b]);
    await restoreEmpty([a, b]);
    expect(await backend.keys('parker-calls:*')).toContain(`parker-calls:{calls}:call:${callIdOf(call)}`);
    // the slot is back: the client still holds its one call, on every replica
    expectEnvelope(await postSdp(b.app), 429);
    expectEnvelope(await postSdp(a.app), 429);
    expect(await backend.keys('parker-calls:{calls}:client:*')).toEqual(['parker-calls:{calls}:client:ip:127.0.0.1']);

    // The replica that started it is gone: only what it re-registered in Redis can end the call.
    await a.app.close();
    apps.splice(apps.indexOf(a), 1);
    clock.advance(10_000);
    await b.app.calls.hangUpDue();
    await waitUntil(() => b.logs.find('call ended').length === 1, 'the hangup by the other replica');
    expect(fake.hangups).toEqual([expect.objectContaining({ callId: callIdOf(call), status: 200 })]);
    expect(b.logs.find('call ended')[0]).toMatchObject({ reason: 'deadline' });
  });

  it('during an outage each replica counts the slots it holds (the limit once per replica); calls started meanwhile move into Redis', async () => {
    const [a, b] = (await replicas(2, { MAX_CONCURRENT_CALLS_PER_CLIENT: '1' })) as [TestApp, TestApp];
    expect((await postSdp(a.app)).statusCode).toBe(201);
    await outage([a, b]);
    // a knows the call it started; b knows nothing of it (the stated worst case: the limit once per replica)
    expectEnvelope(await postSdp(a.app), 429);
    const during = await postSdp(b.app);
    expect(during.statusCode).toBe(201);
    expectEnvelope(await postSdp(b.app), 429);
    await restoreEmpty([a, b]);
    // both calls are in Redis again: the client is over its limit until one ends
    expectEnvelope(await postSdp(a.app), 429);
    expectEnvelope(await postSdp(b.app), 429);
    expect(await backend.admin.zcard('parker-calls:{calls}:deadlines')).toBe(2);
    // the call b started during the outage is in Redis now: a, which never saw it, ends it
    expect((await endCall(a.app, String(during.headers.location))).statusCode).toBe(204);
    expect(fake.hangups).toEqual([expect.objectContaining({ callId: callIdOf(during), status: 200 })]);
    expect(await backend.admin.zcard('parker-calls:{calls}:deadlines')).toBe(1);
  });

  it('counters counted in-process during the outage are merged into Redis when it returns; /healthz says what holds', async () => {
    const [a, b] = (await replicas(2)) as [TestApp, TestApp];
    const before = await redisHealth(a);
    expect(before).toMatchObject({ topology: backend.kind, mode: 'redis', lost_writes_possible: false });
    expect(before.note).toBeUndefined();
    const mint = (t: TestApp) =>
      t.app.inject({ method: 'POST', url: '/v1/realtime/token', remoteAddress: '198.51.100.7', headers: { origin: SITE_ORIGIN } });
    expect((await mint(a)).statusCode).toBe(200);
    await outage([a, b]);
    const during = await redisHealth(a);
    expect(during).toMatchObject({ mode: 'fallback', lost_writes_possible: true });
    expect(during.note).toMatch(/in-process/);
    expect(Date.parse(during.since)).toBeGreaterThanOrEqual(Date.parse(before.since));
    expect((await a.app.inject({ method: 'GET', url: '/healthz' })).json()).toMatchObject({ rate_limit_store: 'fallback' });
    for (let i = 0; i < 4; i++) expect((await mint(a)).statusCode).toBe(200);
    for (let i = 0; i < 3; i++) expect((await mint(b)).statusCode).toBe(200);
    await restoreEmpty([a, b]);
    expect(Number(await backend.admin.get('parker-rl:{m:ip:198.51.100.7}'))).toBe(7);
    expect(await backend.admin.pttl('parker-rl:{m:ip:198.51.100.7}')).toBeGreaterThan(0);
    // 7 of 10 spent across both replicas: three more, then 429 on either
    for (let i = 0; i < 3; i++) expect((await mint(i % 2 ? a : b)).statusCode).toBe(200);
    expectEnvelope(await mint(a), 429);
    expectEnvelope(await mint(b), 429);
    // one line, once everything a kept is back: its per-minute counter (and any other limit's)
    const [restored, ...more] = a.logs.find('redis: re-registered what this replica holds');
    expect(more).toEqual([]);
    expect(restored?.counters_merged).toBeGreaterThanOrEqual(1);
  });

  it('data wiped while connected: no slot Redis forgot is handed out again, and all is re-registered within a second or so', async () => {
    const [a] = (await replicas(1, { MAX_CONCURRENT_CALLS_PER_CLIENT: '1' })) as [TestApp];
    const call = await postSdp(a.app);
    expect(call.statusCode).toBe(201);
    await backend.flush();
    // at once, before any poll: the reservation sees the epoch is gone and puts the call back first
    expectEnvelope(await postSdp(a.app), 429);
    await waitUntil(
      async () => (await backend.keys('parker-calls:*')).includes(`parker-calls:{calls}:call:${callIdOf(call)}`),
      'the call re-registered',
      5_000,
    );
    expect(await backend.admin.zscore('parker-calls:{calls}:client:ip:127.0.0.1', callIdOf(call))).not.toBeNull();
    await waitUntil(() => a.logs.find('redis: re-registered what this replica holds').length > 0, 'the log line', 5_000);
    expect(a.logs.find('redis: shared state found missing, re-registering')).not.toHaveLength(0);
  });
});

describe('an outage where Redis keeps its data (single Redis, frozen)', () => {
  it('a call ended during the outage is removed from Redis when it answers again', async () => {
    const redis = await RedisServer.start();
    const admin = new Redis(redis.url);
    const fake = await FakeOpenAI.start();
    const env = { REDIS_URL: redis.url, MAX_CONCURRENT_CALLS_PER_CLIENT: '1' };
    const a = await buildTestApp(fake, env);
    const b = await buildTestApp(fake, env);
    try {
      await waitUntil(async () => (await settled(a)) && (await settled(b)), 'both replicas on Redis');
      // a slot given back while Redis answers is given back there, not kept for later
      fake.scriptCalls({ kind: 'status', status: 400 });
      expectEnvelope(await postSdp(a.app), 502);
      const call = await postSdp(a.app);
      expect(call.statusCode).toBe(201);
      redis.freeze();
      // Redis times out: a ends the call it started from what it kept in-process
      expect((await endCall(a.app, String(call.headers.location))).statusCode).toBe(204);
      expect(fake.hangups).toHaveLength(1);
      redis.thaw();
      await waitUntil(async () => (await settled(a)) && (await admin.zcard('parker-calls:{calls}:deadlines')) === 0, 'the ended call forgotten in Redis');
      expect(await admin.zcard('parker-calls:{calls}:client:ip:127.0.0.1')).toBe(0);
      expect((await postSdp(b.app)).statusCode).toBe(201);
      // exactly what a ended while Redis was frozen was removed on its return
      expect(a.logs.find('redis: re-registered what this replica holds').at(-1)).toMatchObject({ ended_removed: 1 });
    } finally {
      await a.app.close();
      await b.app.close();
      await fake.close();
      admin.disconnect();
      await redis.stop();
    }
  });
});
