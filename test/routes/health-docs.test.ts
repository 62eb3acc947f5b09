import { existsSync, readFileSync } from 'node:fs';
import Fastify from 'fastify';
import { z } from 'zod';
import { serializerCompiler, validatorCompiler, type ZodTypeProvider } from 'fastify-type-provider-zod';
import { beforeEach, describe, expect, it } from 'vitest';
import { docs } from '../../src/plugins/docs.js';
import { SPORT_LABEL, SPORT_RULE } from '../../src/realtime/choices.js';
import { ERROR_STATUSES, errorDescription, errorResponses, type ErrorStatus } from '../../src/routes/error-responses.js';
import { ManualClock, useFakeOpenAI, type TestApp } from '../support/app.js';

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
  for (let i = 0; i < 50 && openai.fake.readinessChecks === 0; i++) await new Promise(setImmediate);
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
    await expect.poll(() => openai.fake.readinessChecks).toBe(1);
    for (let i = 0; i < 25; i++) await healthz();
    clock.advance(29_000);
    await healthz();
    expect(openai.fake.readinessChecks).toBe(1);
    clock.advance(1_000);
    await healthz();
    await expect.poll(() => openai.fake.readinessChecks).toBe(2);
  });

  it('reports disconnected when OpenAI fails the check, and is still 200', async () => {
    await expect.poll(async () => (await healthz()).openai_status).toBe('connected');
    openai.fake.readinessStatus = 500;
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
      endpoints: {
        token: 'POST /v1/realtime/token',
        call: 'POST /v1/realtime/calls',
        hangup: 'DELETE /v1/realtime/calls/{call_id}',
        health: 'GET /healthz',
        docs: 'GET /docs',
        metrics: 'GET /metrics',
      },
    });
  });
});

interface Operation {
  parameters?: { in: string; name: string; required: boolean; description?: string; schema: { example?: string } }[];
  security?: Record<string, string[]>[];
  responses: Record<string, { description: string; content?: Record<string, { example?: { error?: { code: number } } }> }>;
  requestBody?: { content: Record<string, { schema: { properties: Record<string, { pattern?: string; description?: string }> } }> };
}
interface Document {
  paths: Record<string, Record<string, Operation>>;
  components?: { securitySchemes?: Record<string, { type: string; scheme: string }> };
}

/** The README (its Errors table and rules must match the code). */
function readmes(): [string, string][] {
  const files = ['../../README.md'].map((path) => new URL(path, import.meta.url));
  return files.filter((file) => existsSync(file)).map((file) => [file.pathname.split('/').slice(-2).join('/'), readFileSync(file, 'utf8')]);
}

const openapi = async (app: TestApp['app']) => (await app.inject({ method: 'GET', url: '/openapi.json' })).json<Document>();

describe('docs that say what each answer means', () => {
  it('every documented error says when it happens and what to do, from the one table, with its example', async () => {
    const token = (await openapi(t.app)).paths['/v1/realtime/token']!.post!;
    const errors = Object.keys(token.responses).filter((code) => Number(code) >= 400);
    expect(errors).toEqual(['400', '403', '413', '415', '422', '429', '431', '502', '503', '504']);
    for (const code of errors) {
      const doc = ERROR_STATUSES[Number(code) as ErrorStatus];
      const response = token.responses[code]!;
      expect(response.description, code).toBe(errorDescription(doc));
      expect(response.description).toMatch(/\*\*When:\*\* .+\. \*\*What to do:\*\* .+\.$/);
      expect(response.content?.['application/json']?.example?.error?.code).toBe(Number(code));
    }
  });

  it('/readyz documents its 503 the same way, in its own words', async () => {
    const readyz = (await openapi(t.app)).paths['/readyz']!.get!;
    expect(readyz.responses['503']?.description).toMatch(/^\*\*When:\*\* OpenAI refused the API key.+\*\*What to do:\*\* send this replica no traffic/);
    expect(readyz.responses['503']?.content?.['application/json']?.example?.error?.code).toBe(503);
  });

  it('names every success response (no "Default Response")', async () => {
    const doc = await openapi(t.app);
    for (const [path, item] of Object.entries(doc.paths)) {
      for (const [method, operation] of Object.entries(item)) {
        const success = Object.keys(operation.responses).filter((status) => status.startsWith('2'));
        expect(success.length, `${method} ${path}`).toBeGreaterThan(0);
        for (const status of success) expect(operation.responses[status]?.description, `${method} ${path} ${status}`).toMatch(/^(?!Default Response)./);
      }
    }
    expect(doc.paths['/v1/realtime/token']!.post!.responses['200']!.description).toMatch(/client secret/i);
  });

  it('documents the Origin header on the guarded route only, required unless ALLOW_MISSING_ORIGIN', async () => {
    const doc = await openapi(t.app);
    const origin = doc.paths['/v1/realtime/token']!.post!.parameters?.find((p) => p.in === 'header' && p.name === 'Origin');
    expect(origin).toMatchObject({ required: true, schema: { example: 'https://www.espn.com' } });
    expect(origin?.description).toMatch(/ALLOWED_ORIGINS/);
    // Open routes document only the optional X-Request-ID a caller may send.
    expect(doc.paths['/healthz']!.get!.parameters?.map((p) => p.name)).toEqual(['X-Request-ID']);
    expect(doc.paths['/readyz']!.get!.parameters?.map((p) => p.name)).toEqual(['X-Request-ID']);
    // Documented, not validated: a request without Origin is still the guard's 403, not a 422.
    expect((await t.app.inject({ method: 'POST', url: '/v1/realtime/token' })).statusCode).toBe(403);
    const relaxed = await openai.app({ ALLOW_MISSING_ORIGIN: 'true' });
    const relaxedOrigin = (await openapi(relaxed.app)).paths['/v1/realtime/token']!.post!.parameters?.find((p) => p.name === 'Origin');
    expect(relaxedOrigin?.required).toBe(false);
  });

  it('without caller auth, no Authorization and no 401 are documented', async () => {
    const doc = await openapi(t.app);
    expect(doc.components?.securitySchemes).toBeUndefined();
    expect(doc.paths['/v1/realtime/token']!.post!.security).toBeUndefined();
    expect(doc.paths['/v1/realtime/token']!.post!.responses['401']).toBeUndefined();
  });

  it('with bearerAuth, guarded routes get the bearer scheme and their 401; an open route gets no bearer scheme, only a 401 it declares itself', async () => {
    const app = Fastify({ logger: false });
    app.setValidatorCompiler(validatorCompiler);
    app.setSerializerCompiler(serializerCompiler);
    await app.register(docs, { version: '1', config: { allowedOrigins: ['https://www.espn.com'], allowMissingOrigin: false }, bearerAuth: true });
    const ok = z.object({ ok: z.boolean() }).describe('Fine.');
    // The mark the /v1 scope puts on each of its routes, so the docs plugin is tested alone.
    app.withTypeProvider<ZodTypeProvider>().post('/guarded', { config: { guard: 'spends' }, schema: { response: { 200: ok, ...errorResponses([401, 403]) } } }, async () => ({ ok: true }));
    app.withTypeProvider<ZodTypeProvider>().get('/open', { schema: { response: { 200: ok, ...errorResponses([401]) } } }, async () => ({ ok: true }));
    await app.ready();
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json<Document>();
    await app.close();
    expect(doc.components?.securitySchemes?.bearerAuth).toMatchObject({ type: 'http', scheme: 'bearer' });
    const guarded = doc.paths['/guarded']!.post!;
    expect(guarded.security).toEqual([{ bearerAuth: [] }]);
    expect(guarded.responses['401']?.description).toBe(errorDescription(ERROR_STATUSES[401]));
    expect(guarded.parameters?.map((p) => p.name)).toEqual(['Origin', 'X-Request-ID']);
    expect(doc.paths['/open']!.get!.security).toBeUndefined();
    expect(doc.paths['/open']!.get!.parameters?.map((p) => p.name)).toEqual(['X-Request-ID']);
    // Its own 401 (a route with its own token, like /admin/usage), not the JWT's.
    expect(doc.paths['/open']!.get!.responses['401']).toBeDefined();
  });

  it('states one sport rule: the OpenAPI pattern, the 422 message and the README agree', async () => {
    const doc = await openapi(t.app);
    const sport = doc.paths['/v1/realtime/token']!.post!.requestBody!.content['application/json']!.schema.properties.sport!;
    expect(sport.pattern).toBe(SPORT_LABEL.source);
    expect(sport.description).toContain(SPORT_RULE);
    const refused = await t.mint({ sport: 'nba; drop tables' });
    expect(refused.statusCode).toBe(422);
    expect(refused.body).toContain(SPORT_RULE);
    for (const [name, text] of readmes()) expect(text, name).toContain(SPORT_RULE);
  });

  it("the README's Errors table is the same table (and the draft README's, while there is one)", () => {
    for (const [name, readme] of readmes()) {
      const section = readme.slice(readme.indexOf('## Errors'), readme.indexOf('\n## ', readme.indexOf('## Errors') + 1));
      for (const [status, doc] of Object.entries(ERROR_STATUSES)) {
        expect(section, `${name} row for ${status}`).toContain(`| ${status} | ${doc.when} | ${doc.todo} |`);
      }
    }
  });
});
