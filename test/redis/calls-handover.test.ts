import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOpenAI, FAKE_API_KEY } from '../support/fake-openai.js';
import { SITE_ORIGIN } from '../support/app.js';
import { SDP_OFFER } from '../support/calls.js';
import { requireCommand } from '../support/commands.js';
import { REDIS_BACKENDS, type RedisBackend } from '../support/redis-backends.js';
import { startServer, type ServerProcess } from '../support/server-process.js';
import { waitUntil } from '../support/wait.js';

requireCommand('redis-server', 'apt-get install redis-server');
requireCommand('redis-cli', 'apt-get install redis-tools');

/** Two `node dist/server.js` replicas on one Redis: one is killed with SIGKILL, the other ends its call on time. */
describe.each(REDIS_BACKENDS)('deadline hand-over between processes, real time ($name)', (kind) => {
  let redis: RedisBackend;
  let fake: FakeOpenAI;
  const servers: ServerProcess[] = [];

  beforeAll(async () => {
    redis = await kind.start();
    fake = await FakeOpenAI.start();
  });

  afterAll(async () => {
    await Promise.all(servers.map((server) => server.stop()));
    await fake?.close();
    await redis?.close();
  });

  const env = () => ({
    OPENAI_API_KEY: FAKE_API_KEY,
    OPENAI_BASE_URL: fake.baseUrl,
    ALLOWED_ORIGINS: SITE_ORIGIN,
    ...redis.env,
    MAX_CALL_SECONDS: '10',
    OPENAI_TIMEOUT_MS: '2000',
    LOG_LEVEL: 'info',
  });

  const onRedis = async (server: ServerProcess) => {
    const health = (await (await fetch(`${server.url}/healthz`)).json()) as { rate_limit_store: string };
    return health.rate_limit_store === 'redis';
  };

  it('SIGKILL the replica that started the call: the other hangs it up at the deadline, once', { timeout: 30_000 }, async () => {
    const a = await startServer(env());
    servers.push(a);
    const b = await startServer(env());
    servers.push(b);
    await waitUntil(async () => (await onRedis(a)) && (await onRedis(b)), 'both replicas on Redis');

    const response = await fetch(`${a.url}/v1/realtime/calls`, {
      method: 'POST',
      headers: { origin: SITE_ORIGIN, 'content-type': 'application/sdp' },
      body: SDP_OFFER,
    });
    expect(response.status).toBe(201);
    const callId = response.headers.get('location')?.split('/').pop() as string;
    const created = fake.calls.get(callId);
    expect(created).toBeDefined();

    a.child.kill('SIGKILL');
    expect((await a.exited).signal).toBe('SIGKILL');

    await waitUntil(() => fake.hangups.length > 0, 'the hangup from the surviving replica', 20_000);
    const [hangup] = fake.hangups;
    expect(hangup).toMatchObject({ callId, status: 200 });
    // The fake created the call just before the service started its clock: never early, at most ~1 s late.
    const lateMs = (hangup?.at ?? 0) - ((created?.createdAt ?? 0) + 10_000);
    console.info(`hangup lateness after SIGKILL hand-over: ${lateMs} ms`);
    expect(lateMs).toBeGreaterThanOrEqual(0);
    expect(lateMs).toBeLessThan(2_000);
    await waitUntil(() => b.lines.some((line) => line.includes('"msg":"call ended"')), 'the audit line on the survivor');
    expect(b.lines.find((line) => line.includes('"msg":"call ended"'))).toContain('"reason":"deadline"');
    expect(fake.hangups).toHaveLength(1);
  });
});
