import { describe, expect, it } from 'vitest';
import type { OpenAPIV3 } from 'openapi-types';
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../../../src/app.js';
import { loadConfig } from '../../../src/config.js';
import { expectEnvelope, testEnv, useFakeOpenAI } from '../../support/app.js';

/** Guards by place: every /v1 route runs the caller guards because of where it is registered. */
describe('the guarded /v1 scope', () => {
  const openai = useFakeOpenAI();
  /** Built but not ready: routes can still be added, as a new plugin would. */
  async function building(run: (app: FastifyInstance) => Promise<void>): Promise<void> {
    const app = await buildApp(loadConfig(testEnv(openai.fake.baseUrl, { LOG_LEVEL: 'silent' })));
    try {
      await run(app);
    } finally {
      await app.close();
    }
  }

  it('refuses to register a /v1 route outside the scope, naming the route and where it belongs', async () => {
    await building(async (app) => {
      expect(() => app.post('/v1/realtime/free', async () => ({ minted: true }))).toThrow(
        /POST \/v1\/realtime\/free is outside the guarded \/v1 scope: register it in src\/routes\/v1\/index\.ts/,
      );
    });
  });

  it('refuses to boot when a plugin adds an unguarded /v1 route', async () => {
    await building(async (app) => {
      const loading = app.register(async (plugin) => {
        plugin.get('/v1/realtime/sessions', async () => ({}));
      });
      await expect(Promise.resolve(loading).then(() => app.ready())).rejects.toThrow(
        /GET \/v1\/realtime\/sessions is outside the guarded \/v1 scope/,
      );
    });
  });

  it('lets a /v1 route declared public through, and leaves routes outside /v1 alone', async () => {
    await building(async (app) => {
      expect(() => app.get('/v1/status', { config: { public: true } }, async () => ({ ok: true }))).not.toThrow();
      expect(() => app.get('/elsewhere', async () => ({ ok: true }))).not.toThrow();
    });
  });

  it('every /v1 operation in the document takes the Origin header, and refuses a request without it (403)', async () => {
    const { app } = await openai.app();
    const doc = (await app.inject({ method: 'GET', url: '/openapi.json' })).json<OpenAPIV3.Document>();
    const operations = Object.entries(doc.paths).flatMap(([path, item]) =>
      path.startsWith('/v1/') ? Object.entries(item ?? {}).map(([method, op]) => ({ path, method, op: op as OpenAPIV3.OperationObject })) : [],
    );
    expect(operations.length).toBeGreaterThanOrEqual(3);
    for (const { path, method, op } of operations) {
      expect((op.parameters as OpenAPIV3.ParameterObject[] | undefined)?.map((p) => p.name), `${method} ${path}`).toContain('Origin');
      const url = path.replace('{call_id}', 'call_x');
      const response = await app.inject({ method: method.toUpperCase() as 'POST', url, headers: { 'content-type': 'application/json' }, payload: '{}' });
      expect(expectEnvelope(response, 403).error.message, `${method} ${path}`).toBe('An Origin header is required.');
    }
    expect(openai.fake.mintRequests).toHaveLength(0);
  });
});
