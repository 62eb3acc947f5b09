import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { adminPage } from '../admin/page.js';
import { usageReportSchema, type UsageReport } from '../admin/usage-report.js';
import { AppError } from '../errors.js';
import { operatorTokenCheck } from '../operator-token.js';
import { errorResponses, NO_STORE } from '../routes/error-responses.js';

export interface AdminOptions {
  /** ADMIN_TOKEN: the bearer, or the Basic password. */
  token: string;
  /** The current windows: from the usage ledger (all replicas when Redis is set) or this process. */
  usage: () => Promise<UsageReport>;
}

// The page's own script (emitted next to this file's folder by tsc: src/admin or dist/admin), and
// uPlot's browser build from node_modules: files, so helmet's CSP (no inline script) holds.
const require = createRequire(import.meta.url);
const ASSETS: Record<string, { type: string; path: string | URL }> = {
  'admin.js': { type: 'text/javascript; charset=utf-8', path: new URL('../admin/admin.js', import.meta.url) },
  'uPlot.iife.min.js': { type: 'text/javascript; charset=utf-8', path: require.resolve('uplot/dist/uPlot.iife.min.js') },
  'uPlot.min.css': { type: 'text/css; charset=utf-8', path: require.resolve('uplot/dist/uPlot.min.css') },
};

/**
 * /admin (the page) and /admin/usage (its JSON), for operators only: registered only when
 * ADMIN_TOKEN is set (else both are 404), outside the /v1 scope, never with CORS headers.
 */
export async function adminRoutes(app: FastifyInstance, opts: AdminOptions) {
  const authorized = operatorTokenCheck(opts.token, { basic: true });
  const assets = new Map(Object.entries(ASSETS).map(([name, asset]) => [name, { type: asset.type, body: readFileSync(asset.path) }]));

  app.addHook('onRequest', async (request: FastifyRequest, reply: FastifyReply) => {
    // Never readable from another origin, whatever CORS_ORIGINS says; never cached by a proxy.
    reply.header('cache-control', 'no-store');
    if (!authorized(request.headers.authorization)) {
      throw new AppError(401, 'The operator token is missing or wrong (Bearer ADMIN_TOKEN, or Basic with it as the password).', {
        reason: 'operator_auth',
        headers: { 'www-authenticate': 'Basic realm="admin"' },
      });
    }
  });

  const routeConfig = { cors: false, quietAccessLog: true };
  app.get('/admin', { schema: { hide: true }, config: routeConfig }, async (_request, reply) => {
    reply.type('text/html; charset=utf-8');
    return adminPage();
  });

  app.get(
    '/admin/usage',
    {
      config: routeConfig,
      schema: {
        tags: ['operations'],
        summary: 'Operators: mints, spend and active calls per client (only with ADMIN_TOKEN)',
        description:
          'The JSON behind the `/admin` page. Requires `Authorization: Bearer <ADMIN_TOKEN>`, or HTTP Basic with the ' +
          'token as the password (so a browser can open the page); without it, 401 with ' +
          '`WWW-Authenticate: Basic realm="admin"`. Absent (404) when ADMIN_TOKEN is unset. Never answered with CORS headers.',
        responseHeaders: { 200: { 'Cache-Control': NO_STORE } },
        response: {
          200: usageReportSchema,
          ...errorResponses([401], {
            401: {
              when: 'the operator token is missing or wrong (`WWW-Authenticate: Basic realm="admin"`)',
              todo: 'send `Authorization: Bearer <ADMIN_TOKEN>`, or Basic with the token as the password',
              example: { message: 'The operator token is missing or wrong (Bearer ADMIN_TOKEN, or Basic with it as the password).' },
            },
          }),
        },
      },
    },
    async (_request, reply) => {
      reply.type('application/json; charset=utf-8');
      return JSON.stringify(await opts.usage());
    },
  );

  // A preflight gets no CORS answer either (the auth hook refuses it): @fastify/cors's catch-all
  // OPTIONS route would otherwise answer it for every origin in CORS_ORIGINS.
  app.options('/admin', { schema: { hide: true }, config: routeConfig }, async () => undefined);
  app.options('/admin/*', { schema: { hide: true }, config: routeConfig }, async () => undefined);

  app.get<{ Params: { name: string } }>('/admin/assets/:name', { schema: { hide: true }, config: routeConfig }, async (request, reply) => {
    const asset = assets.get(request.params.name);
    if (!asset) throw new AppError(404, `No route GET /admin/assets/${request.params.name.slice(0, 100)}.`, { reason: 'not_found' });
    reply.type(asset.type);
    return asset.body;
  });
}
