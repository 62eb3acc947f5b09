import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { buildTestApp, expectEnvelope, ManualClock, SITE_ORIGIN, useFakeOpenAI, type TestApp } from '../support/app.js';
import { FakeOpenAI } from '../support/fake-openai.js';
import { waitUntil } from '../support/wait.js';

const openai = useFakeOpenAI();

const probe = (t: TestApp, url: '/readyz' | '/healthz') => t.app.inject({ method: 'GET', url });

const RESTRICTED_KEY = 'sk-proj-restricted-realtime-only-0123456789';
const NO_REALTIME_KEY = 'sk-proj-restricted-models-only-0123456789';

describe('GET /readyz', () => {
  it('checks OpenAI once at boot, before any probe, and is ready with a good key', async () => {
    const t = await openai.app();
    await expect.poll(() => openai.fake.readinessChecks).toBe(1);
    const response = await probe(t, '/readyz');
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ status: 'ready', openai_status: 'connected' });
    expect(response.headers['cache-control']).toBe('no-store');
  });

  it('asks what minting needs, and creates nothing: POST /realtime/client_secrets with a body OpenAI refuses (400)', async () => {
    await openai.app();
    await expect.poll(() => openai.fake.readinessChecks).toBe(1);
    expect(openai.fake.modelsCalls).toBe(0);
    // not a mint: nothing recorded, no secret made
    expect(openai.fake.mintRequests).toHaveLength(0);
  });

  it('a least-privilege restricted key (Realtime, no "List models") is ready, though GET /models refuses it', async () => {
    openai.fake.keys.set(RESTRICTED_KEY, 'realtime_only');
    const t = await openai.app({ OPENAI_API_KEY: RESTRICTED_KEY });
    // the control: OpenAI (the fake) refuses this key on GET /models, as the old check asked
    const models = await fetch(`${openai.fake.baseUrl}/models`, { headers: { authorization: `Bearer ${RESTRICTED_KEY}` } });
    expect(models.status).toBe(401);
    expect(((await models.json()) as { error: { message: string; code: string } }).error).toMatchObject({
      code: 'missing_scope',
      message: expect.stringContaining('Missing scopes: api.model.read') as unknown,
    });
    const response = await probe(t, '/readyz');
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ status: 'ready', openai_status: 'connected' });
    expect((await t.mint()).statusCode).toBe(200);
  });

  it('a revoked key is not ready: 503 envelope (not_ready), /healthz live with openai_status unauthorized', async () => {
    openai.fake.keys.set(RESTRICTED_KEY, 'revoked');
    const t = await openai.app({ OPENAI_API_KEY: RESTRICTED_KEY });
    const body = expectEnvelope(await probe(t, '/readyz'), 503);
    expect(body.error.message).toMatch(/refused the API key/);
    expect(body.error.message).not.toContain(t.config.openaiApiKey);
    const health = await probe(t, '/healthz');
    expect(health.statusCode).toBe(200);
    expect(health.json()).toMatchObject({ status: 'healthy', openai_status: 'unauthorized' });
    expect(t.logs.find('request refused').at(-1)).toMatchObject({ refusal: 'not_ready', status: 503 });
    expect(t.logs.find('OpenAI refused the API key (401/403 on the readiness check, POST /realtime/client_secrets): /readyz answers 503')).toHaveLength(1);
    expect(t.logs.raw).not.toContain(RESTRICTED_KEY);
  });

  it('a restricted key without the Realtime permission is not ready, though GET /models accepts it', async () => {
    openai.fake.keys.set(NO_REALTIME_KEY, 'no_realtime');
    const t = await openai.app({ OPENAI_API_KEY: NO_REALTIME_KEY });
    const models = await fetch(`${openai.fake.baseUrl}/models`, { headers: { authorization: `Bearer ${NO_REALTIME_KEY}` } });
    expect(models.status).toBe(200);
    expectEnvelope(await probe(t, '/readyz'), 503);
  });

  it('403 (key not permitted) is not ready either', async () => {
    openai.fake.readinessStatus = 403;
    const t = await openai.app();
    expectEnvelope(await probe(t, '/readyz'), 503);
  });

  it('probes never become a call to OpenAI each: one check per HEALTH_CHECK_INTERVAL', async () => {
    const clock = new ManualClock();
    const t = await openai.app({ HEALTH_CHECK_INTERVAL: '30' }, { now: clock.now });
    for (let i = 0; i < 20; i++) expect((await probe(t, '/readyz')).statusCode).toBe(200);
    expect(openai.fake.readinessChecks).toBe(1);
  });

  it('follows the last check: a key revoked later fails readiness, a restored one recovers it', async () => {
    const clock = new ManualClock();
    const t = await openai.app({ HEALTH_CHECK_INTERVAL: '30' }, { now: clock.now });
    expect((await probe(t, '/readyz')).statusCode).toBe(200);
    openai.fake.keys.set(t.config.openaiApiKey, 'revoked');
    clock.advance(30_000);
    await expect.poll(async () => (await probe(t, '/readyz')).statusCode).toBe(503);
    openai.fake.keys.set(t.config.openaiApiKey, 'all');
    clock.advance(30_000);
    await expect.poll(async () => (await probe(t, '/readyz')).statusCode).toBe(200);
  });

  it('OpenAI overloaded (500) is not "not ready": the breaker handles that', async () => {
    openai.fake.readinessStatus = 500;
    const t = await openai.app();
    expect((await probe(t, '/readyz')).json()).toEqual({ status: 'ready', openai_status: 'disconnected' });
  });
});

describe('GET /readyz with OpenAI unreachable', () => {
  let t: TestApp | undefined;
  afterEach(async () => {
    await t?.app.close();
  });

  it('is still ready (unreachable is not a refused key) and /healthz says disconnected', async () => {
    const gone = await FakeOpenAI.start();
    await gone.close();
    t = await buildTestApp(gone, { OPENAI_TIMEOUT_MS: '500' });
    const response = await probe(t, '/readyz');
    expect(response.statusCode).toBe(200);
    expect(response.json()).toEqual({ status: 'ready', openai_status: 'disconnected' });
    expect((await probe(t, '/healthz')).json()).toMatchObject({ openai_status: 'disconnected' });
  });
});

describe('while shutting down', () => {
  it('a probe that arrives during close gets 503 in the envelope (not_ready) and the connection closes', async () => {
    const t = await openai.app();
    const url = new URL(await t.app.listen({ port: 0, host: '127.0.0.1' }));
    const socket: Socket = connect(Number(url.port), '127.0.0.1');
    await once(socket, 'connect');
    let received = '';
    socket.on('data', (chunk: Buffer) => (received += chunk.toString()));
    // A request under way (headers not finished) keeps its socket through close(), as a
    // kept-alive connection of a load balancer would be.
    socket.write('GET /readyz HTTP/1.1\r\nHost: localhost\r\n');
    await waitUntil(() => t.app.server.listening, 'listening');
    const closed = t.app.close();
    await waitUntil(() => t.app.draining, 'close() to begin');
    socket.end(`Origin: ${SITE_ORIGIN}\r\n\r\n`);
    await once(socket, 'close');
    await closed;
    const [head = '', body = ''] = received.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 503 /);
    expect(head.toLowerCase()).toContain('connection: close');
    const envelope = JSON.parse(body) as { error: { code: number; message: string; retry_after: number } };
    expect(envelope.error).toMatchObject({ code: 503, retry_after: 1 });
    expect(envelope.error.message).toMatch(/shutting down/);
    expect(t.logs.find('request refused').at(-1)).toMatchObject({ refusal: 'not_ready' });
  });
});
