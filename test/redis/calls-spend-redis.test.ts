import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildTestApp, type TestApp } from '../support/app.js';
import { endCall, PRICED_USAGE, startWatchedCall } from '../support/calls.js';
import { requireCommand } from '../support/commands.js';
import { FakeOpenAI } from '../support/fake-openai.js';
import { RedisServer } from '../support/redis-server.js';
import { waitUntil } from '../support/wait.js';

requireCommand('redis-server', 'apt-get install redis-server');

const USAGE = PRICED_USAGE;

/** Crossing a cap across replicas: test/redis/calls-spend-ledger.test.ts (both Redis backends). */
describe('a relayed call ended through another replica than the one watching it (real time)', () => {
  let redis: RedisServer;
  let admin: Redis;
  let fake: FakeOpenAI;
  const apps: TestApp[] = [];

  /** Two replicas on one Redis, the cap through the environment: the call manager's CallSpend is the usage ledger. */
  async function replicas(clientCapUsd: number): Promise<[TestApp, TestApp]> {
    const build = async () => {
      const t = await buildTestApp(fake, { REDIS_URL: redis.url, OPENAI_TIMEOUT_MS: '1000', SPEND_PER_CLIENT_PER_DAY_USD: String(clientCapUsd) });
      apps.push(t);
      return t;
    };
    const [a, b] = [await build(), await build()];
    const onRedis = async (t: TestApp) => (await t.app.inject({ url: '/healthz' })).json<{ rate_limit_store: string }>().rate_limit_store === 'redis';
    await waitUntil(async () => (await onRedis(a)) && (await onRedis(b)), 'both replicas on Redis');
    return [a, b];
  }

  /** What the usage ledger (in Redis, so either replica) says a client spent. */
  const spentBy = async (t: TestApp, client: string) => (await t.app.spend.report()).clients.find((row) => row.client === client)?.spend_usd;

  const watchedCall = (t: TestApp, remoteAddress: string) => startWatchedCall(t.app, fake, remoteAddress);

  beforeAll(async () => {
    redis = await RedisServer.start();
    admin = new Redis(redis.url);
  });

  beforeEach(async () => {
    fake = await FakeOpenAI.start();
    await admin.flushall();
  });

  afterEach(async () => {
    for (const t of apps.splice(0)) await t.app.close();
    await fake.close();
  });

  afterAll(async () => {
    admin?.disconnect();
    await redis?.stop();
  });

  it('a call ended through the other replica: its holder lets the sideband go and logs the usage it saw', async () => {
    const [a, b] = await replicas(100);
    const callId = await watchedCall(a, '10.0.0.9');
    fake.pushResponseDone(callId, USAGE);
    await waitUntil(async () => ((await spentBy(a, 'ip:10.0.0.9')) ?? 0) > 0, 'charged');
    expect((await endCall(b.app, `/v1/realtime/calls/${callId}`, '10.0.0.9')).statusCode).toBe(204);
    expect(b.logs.find('call ended')[0]).toMatchObject({ call_id: callId, reason: 'delete', usage_seen: false });
    // OpenAI closes the sideband with the call; A cannot reopen it (404) and finds the call gone.
    await waitUntil(() => a.logs.find('call usage').length === 1, 'the usage line on A', 10_000);
    expect(a.logs.find('call usage')[0]).toMatchObject({ audit: 'call_usage', call_id: callId, cost_usd: 0.070816, responses: 1 });
    // A cap is on: still no hangup for "sideband" of a call that is over.
    expect(a.logs.find('call ended')).toEqual([]);
    expect(fake.sidebandsOpen(callId)).toBe(0);
  });
});
