import { beforeEach, describe, expect, it } from 'vitest';
import { ManualClock, useFakeOpenAI, type TestApp } from './support/app.js';

const openai = useFakeOpenAI();
let t: TestApp;
let clock: ManualClock;

beforeEach(async () => {
  clock = new ManualClock();
  t = await openai.app({ HEALTH_CHECK_INTERVAL: '30' }, { now: clock.now });
});


interface Health {
  status: string;
  timestamp: string;
  version: string;
  openai_status: string;
  circuit_breaker: { state: string };
  rate_limit_store: string;
}

const healthz = async () => {
  const response = await t.app.inject({ method: 'GET', url: '/healthz' });
  expect(response.statusCode).toBe(200);
  return response.json<Health>();
};

/** Waits for the background upstream check the last probe started. */
async function settle(): Promise<void> {
  await t.app.inject({ method: 'GET', url: '/healthz' });
  for (let i = 0; i < 50 && openai.fake.modelsCalls === 0; i++) await new Promise(setImmediate);
}

describe('GET /healthz', () => {
  it('answers at once, then reports the upstream check; no Origin needed', async () => {
    const first = await healthz();
    // The boot check may or may not have answered by the first probe: the probe never waits for it.
    expect(first).toMatchObject({ status: 'healthy', version: '1.0.0', rate_limit_store: 'memory' });
    expect(['unknown', 'connected']).toContain(first.openai_status);
    expect(new Date(first.timestamp).toISOString()).toBe(first.timestamp);
    expect(first.circuit_breaker.state).toBe('closed');
    await settle();
    await expect.poll(async () => (await healthz()).openai_status).toBe('connected');
  });

  it('calls OpenAI at most once per HEALTH_CHECK_INTERVAL however often it is probed', async () => {
    for (let i = 0; i < 25; i++) await healthz();
    await expect.poll(() => openai.fake.modelsCalls).toBe(1);
    for (let i = 0; i < 25; i++) await healthz();
    clock.advance(29_000);
    await healthz();
    expect(openai.fake.modelsCalls).toBe(1);
    clock.advance(1_000);
    await healthz();
    await expect.poll(() => openai.fake.modelsCalls).toBe(2);
  });

  it('reports disconnected when OpenAI fails the check, and is still 200', async () => {
    await expect.poll(async () => (await healthz()).openai_status).toBe('connected');
    openai.fake.modelsStatus = 500;
    clock.advance(30_000);
    await expect.poll(async () => (await healthz()).openai_status).toBe('disconnected');
  });
});

describe('docs and service info', () => {
  interface OpenApi {
    openapi: string;
    paths: Record<string, Record<string, { requestBody?: { required: boolean; content: Record<string, { schema: { properties: Record<string, { enum?: string[]; maxLength?: number }> } }> }; responses: Record<string, { content?: Record<string, { example?: unknown }> }> }>>;
  }

  it('serves an OpenAPI 3 document generated from the zod schemas', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/openapi.json' });
    expect(response.statusCode).toBe(200);
    const doc = response.json<OpenApi>();
    expect(doc.openapi).toMatch(/^3\./);
    const token = doc.paths['/v1/realtime/token']?.post;
    expect(token).toBeDefined();
    expect(token!.requestBody!.required).toBe(false);
    const props = token!.requestBody!.content['application/json']!.schema.properties;
    expect(props.model?.enum).toEqual(t.config.allowedModels);
    expect(props.voice?.enum).toEqual(t.config.allowedVoices);
    expect(props.difficulty?.enum).toEqual(['easy', 'savage', 'expert']);
    expect(props.instructions?.maxLength).toBe(4000);
    for (const code of ['200', '403', '422', '429', '502', '503', '504']) {
      const example = token!.responses[code]?.content?.['application/json']?.example;
      expect(example, `response ${code} has an example`).toBeDefined();
    }
    expect(Object.keys(doc.paths)).toEqual(expect.arrayContaining(['/', '/healthz', '/v1/realtime/token']));
    expect(Object.keys(doc.paths)).not.toContain('/metrics');
  });

  it('serves Swagger UI at /docs', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/docs/' });
    expect(response.statusCode).toBe(200);
    expect(response.headers['content-type']).toContain('text/html');
    expect(response.body).toContain('swagger-ui');
    const redirect = await t.app.inject({ method: 'GET', url: '/docs' });
    expect([200, 302]).toContain(redirect.statusCode);
  });

  it('GET / names the service, its version and its endpoints', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/' });
    expect(response.json()).toMatchObject({
      service: 'realtime-token-service',
      version: '1.0.0',
      status: 'running',
      endpoints: { token: 'POST /v1/realtime/token', health: 'GET /healthz', docs: 'GET /docs', metrics: 'GET /metrics' },
    });
  });
});
