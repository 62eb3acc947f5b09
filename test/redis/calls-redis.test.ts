import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FakeOpenAI } from '../support/fake-openai.js';
import { buildTestApp, expectEnvelope, ManualClock, type TestApp } from '../support/app.js';
import { callIdOf, endCall, postSdp } from '../support/calls.js';
import { requireCommand } from '../support/commands.js';
import { REDIS_BACKENDS, type RedisBackend } from '../support/redis-backends.js';
import { waitUntil } from '../support/wait.js';

requireCommand('redis-server', 'apt-get install redis-server');
requireCommand('redis-cli', 'apt-get install redis-tools');

describe.each(REDIS_BACKENDS)('call deadlines and slots shared in Redis across replicas ($name)', (kind) => {
  let redis: RedisBackend;
  let fake: FakeOpenAI;
  let clock: ManualClock;
  const apps: TestApp[] = [];

  const store = async (t: TestApp) =>
    (await t.app.inject({ method: 'GET', url: '/healthz' })).json<{ rate_limit_store: string }>().rate_limit_store;

  /** Two replicas on one Redis, one fake OpenAI and one clock. */
  async function replicas(env: Record<string, string> = {}): Promise<[TestApp, TestApp]> {
    const build = () =>
      buildTestApp(fake, { ...redis.env, MAX_CALL_SECONDS: '10', OPENAI_TIMEOUT_MS: '1000', ...env }, { now: clock.now, random: () => 0 });
    const a = await build();
    const b = await build();
    apps.push(a, b);
    await waitUntil(async () => (await store(a)) === 'redis' && (await store(b)) === 'redis', 'both replicas on Redis');
    return [a, b];
  }

  beforeAll(async () => {
    redis = await kind.start();
  });

  beforeEach(async () => {
    fake = await FakeOpenAI.start();
    clock = new ManualClock();
    await redis.flush();
  });

  afterEach(async () => {
    for (const t of apps.splice(0)) await t.app.close();
    await fake.close();
  });

  afterAll(async () => {
    await redis?.close();
  });

  it('a replica that is gone loses no deadline: the other hangs its call up', async () => {
    const [a, b] = await replicas();
    const call = await postSdp(a.app);
    expect(call.statusCode).toBe(201);
    await a.app.close();
    apps.splice(apps.indexOf(a), 1);

    clock.advance(10_000);
    await b.app.calls.hangUpDue();
    await waitUntil(() => b.logs.find('call ended').length === 1, 'the hand-over hangup');
    expect(fake.hangups).toEqual([expect.objectContaining({ callId: callIdOf(call), status: 200 })]);
    expect(b.logs.find('call ended')[0]).toMatchObject({ reason: 'deadline', client: 'ip:127.0.0.1' });
    expect(await redis.admin.zcard('parker-calls:{calls}:deadlines')).toBe(0);
  });

  it('exactly once: both replicas racing for the same due calls hang each up one time', async () => {
    const [a, b] = await replicas({ MAX_CONCURRENT_CALLS_PER_CLIENT: '10' });
    const ids: string[] = [];
    for (let i = 0; i < 6; i++) ids.push(callIdOf(await postSdp(i % 2 ? a.app : b.app)));
    clock.advance(10_000);
    await Promise.all([a.app.calls.hangUpDue(), b.app.calls.hangUpDue(), a.app.calls.hangUpDue(), b.app.calls.hangUpDue()]);
    await waitUntil(() => a.logs.find('call ended').length + b.logs.find('call ended').length === 6, 'six hangups');
    expect(fake.hangups.map((h) => h.callId).sort()).toEqual([...ids].sort());
    expect(fake.hangups.every((h) => h.status === 200)).toBe(true);
  });

  it('slots are counted across replicas; DELETE works on either; active calls agree', async () => {
    const [a, b] = await replicas({ MAX_CONCURRENT_CALLS_PER_CLIENT: '1' });
    const call = await postSdp(a.app);
    expect(call.statusCode).toBe(201);
    expectEnvelope(await postSdp(b.app), 429);
    for (const t of [a, b]) expect((await t.app.inject({ url: '/metrics' })).body).toMatch(/^realtime_calls_active 1$/m);

    expect((await endCall(b.app, String(call.headers.location))).statusCode).toBe(204);
    expect(fake.hangups).toHaveLength(1);
    expect((await postSdp(b.app)).statusCode).toBe(201);
    expect(await redis.admin.zcard('parker-calls:{calls}:client:ip:127.0.0.1')).toBe(1);
  });

  it('Redis down: calls go on with in-process slots (still limited, never a 500) and their deadlines kept here', async () => {
    const [a] = await replicas({ MAX_CONCURRENT_CALLS_PER_CLIENT: '1' });
    await redis.stop();
    await waitUntil(async () => (await store(a)) === 'fallback', 'fallback');
    const call = await postSdp(a.app);
    expect(call.statusCode).toBe(201);
    expectEnvelope(await postSdp(a.app), 429);
    clock.advance(10_000);
    await a.app.calls.hangUpDue();
    await waitUntil(() => fake.hangups.length === 1, 'the in-process hangup');
    expect(fake.hangups[0]).toMatchObject({ callId: callIdOf(call), status: 200 });
    await redis.resume();
    await waitUntil(async () => (await store(a)) === 'redis', 'back on Redis');
  });
});
