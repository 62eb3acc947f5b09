import Fastify, { LogController, type FastifyInstance, type FastifyServerOptions } from 'fastify';
import { validatorCompiler } from 'fastify-type-provider-zod';
import type { Config } from './config.js';
import { clientErrorHandler, errorHandling, expectationFailed, frameworkErrors, type ErrorHandlingOptions } from './errors.js';
import { BODY_LIMIT_BYTES, MAX_HEADER_BYTES, MAX_LOGGED_CHARS } from './limits.js';
import { adminRoutes } from './plugins/admin.js';
import { callerAuth } from './plugins/caller-auth.js';
import { clientAddressing } from './plugins/client-address.js';
import { docs } from './plugins/docs.js';
import { admission } from './plugins/admission.js';
import { rateLimiting } from './plugins/rate-limit.js';
import { failoverStore, localStore } from './plugins/rate-limit-store.js';
import { requestContext, requestIdFor } from './plugins/request-context.js';
import { RefusalLog } from './refusal-log.js';
import { helmetHeaders, security } from './plugins/security.js';
import { healthRoutes } from './routes/health.js';
import { metricsRoutes } from './routes/metrics.js';
import { rootRoutes } from './routes/root.js';
import { refuseUnguardedV1, v1Routes } from './routes/v1/index.js';
import type { CallManager } from './realtime/calls.js';
import type { SpendControl } from './usage/spend.js';
import { createServices, type AppDeps, type Services } from './services.js';
import { VERSION } from './version.js';

/** The event loop's mean delay over a second (ms) above which the process is overloaded: new work gets 503 until a second is not. */
const MAX_EVENT_LOOP_DELAY_MS = 1_000;

export type { AppDeps } from './services.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Relayed calls and their deadlines (tests drive the deadline loop through it). */
    calls: CallManager;
    /**
     * With METRICS_PORT: the listener that serves /metrics alone. Whoever listens on PORT listens
     * on it too (server.ts), on the same host; it closes with the app.
     */
    metricsServer: FastifyInstance | undefined;
    /** The daily quota, the spend caps, CallSpend and the usage report (/admin/usage reads it). */
    spend: SpendControl;
  }
}

/** The /metrics listener of METRICS_PORT: that route only, every other path 404 in the envelope. */
async function buildMetricsServer(config: Config, services: Services): Promise<FastifyInstance> {
  const { logger, metrics } = services;
  const errorOptions: ErrorHandlingOptions = {
    headers: helmetHeaders(),
    onRefusal: (request, error) => {
      metrics.refusals.inc({ reason: error.reason });
      request.log.info({ refusal: error.reason, status: error.statusCode, listener: 'metrics' }, 'request refused');
    },
  };
  const server = Fastify({
    loggerInstance: logger.child({ listener: 'metrics' }),
    schemaController,
    genReqId: requestIdFor,
    requestIdHeader: false,
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    return503OnClosing: false,
    http: { maxHeaderSize: MAX_HEADER_BYTES, requireHostHeader: false },
    frameworkErrors: frameworkErrors(errorOptions),
  });
  await server.register(errorHandling, errorOptions);
  await server.register(requestContext);
  // Draining only: its one route answers whatever the event loop's state.
  await server.register(admission, {});
  await server.register(metricsRoutes, { metrics, token: config.metricsToken });
  return server;
}

type ValidatorFactory = NonNullable<NonNullable<FastifyServerOptions['schemaController']>['compilersFactory']>['buildValidator'];

/**
 * zod validates what comes in. What goes out is built field by field by handlers whose return
 * types TypeScript checks against the same zod schemas (which also drive the docs), so the
 * response is serialized as is instead of walked by zod again on every request.
 *
 * Given as factories, not set after construction: Fastify builds its default compilers (ajv and
 * fast-json-stringify, about 90 modules) at construction unless the factories are given, and
 * they would stay on the heap unused: 1.4 MB of live heap, which V8 multiplies into the heap it
 * grows to under load.
 */
const schemaController = {
  compilersFactory: {
    // Fastify types the factory after ajv's; what it calls is the compiler this returns, with the
    // route's schema (a zod one), as setValidatorCompiler would.
    buildValidator: (() => validatorCompiler) as unknown as ValidatorFactory,
    buildSerializer: () => () => (data: unknown) => JSON.stringify(data),
  },
} satisfies FastifyServerOptions['schemaController'];

/** Builds the whole service without listening: the services, then the HTTP wiring on them. */
export async function buildApp(config: Config, deps: AppDeps = {}): Promise<FastifyInstance> {
  const services = await createServices(config, deps);
  const { logger, metrics, client, breaker, pool, upstreamHealth, sharedState, calls, redis } = services;

  // A flood of refusals costs the log a line a second, not two lines a request.
  const refusalLog = new RefusalLog({ log: logger });
  const errorOptions: ErrorHandlingOptions = {
    // Security headers on every error, whichever hook (or the router) refused the request.
    headers: helmetHeaders(),
    onRefusal: (request, error) => {
      metrics.refusals.inc({ reason: error.reason });
      services.spend.countRefusal(error.reason);
      if (!refusalLog.admit(error.reason)) {
        request.quietRefusal = true;
        return;
      }
      request.log[error.statusCode >= 500 ? 'warn' : 'info'](
        {
          refusal: error.reason,
          status: error.statusCode,
          origin: request.headers.origin?.slice(0, MAX_LOGGED_CHARS),
          client_ip: request.clientIp,
          user: request.userId,
          ...error.logContext,
        },
        'request refused',
      );
    },
  };

  const app = Fastify({
    loggerInstance: logger,
    schemaController,
    genReqId: requestIdFor,
    requestIdHeader: false,
    // One access line per response comes from the request-context plugin instead.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    bodyLimit: BODY_LIMIT_BYTES,
    // Longer than a proxy's idle timeout, so the proxy, not us, closes idle keep-alive sockets.
    keepAliveTimeout: 65_000,
    // A mint can take up to the client's deadline; nothing else should take longer.
    requestTimeout: client.deadlineMs + 5_000,
    // The draining plugin answers late requests in the one envelope instead of Fastify's own 503.
    return503OnClosing: false,
    // A request without Host gets the envelope (request-context refuses it), not Node's bare 400.
    http: { maxHeaderSize: MAX_HEADER_BYTES, requireHostHeader: false },
    frameworkErrors: frameworkErrors(errorOptions),
    clientErrorHandler: clientErrorHandler((status, code) => {
      metrics.refusals.inc({ reason: 'bad_request' });
      logger.debug({ status, client_error: code }, 'client error');
    }),
  });
  app.server.on('checkExpectation', expectationFailed);
  app.addHook('onClose', async () => refusalLog.close());
  // Before any route: a /v1 route outside the guarded scope refuses to boot.
  app.addHook('onRoute', refuseUnguardedV1);

  // JSON only (anything else is a 415); an empty body means "all defaults".
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if ((body as string).trim() === '') return done(null, undefined);
    return parseJson(request, body as string, done);
  });

  await app.register(errorHandling, errorOptions);
  await app.register(requestContext);
  // Event-loop delay, not utilization: a busy but responsive server (ELU near 1 under load) keeps serving.
  await app.register(admission, { maxEventLoopDelayMs: deps.maxEventLoopDelayMs ?? MAX_EVENT_LOOP_DELAY_MS });
  await app.register(clientAddressing, { config, log: logger });
  await app.register(callerAuth, { config, jwt: deps.jwt });
  await app.register(security, { config });
  await app.register(rateLimiting, {
    config,
    store: redis ? failoverStore(redis, sharedState) : localStore(),
    budget: services.budget,
    spend: services.spend,
    log: logger,
  });
  await app.register(docs, { version: VERSION, config, bearerAuth: config.authEnabled });

  // /metrics on PORT only when it has no port of its own.
  const metricsOnPort = config.metricsEnabled && config.metricsPort === undefined;
  await app.register(rootRoutes, { version: VERSION, metricsEnabled: metricsOnPort, pool });
  await app.register(healthRoutes, { version: VERSION, upstreamHealth, breaker, sharedState, usageStore: services.spend, pool });
  await app.register(v1Routes, { config, minter: services.minter, calls, metrics, spend: services.spend });
  app.decorate('calls', calls);
  app.decorate('spend', services.spend);
  if (metricsOnPort) await app.register(metricsRoutes, { metrics, token: config.metricsToken });
  const metricsServer = config.metricsEnabled && config.metricsPort !== undefined ? await buildMetricsServer(config, services) : undefined;
  app.decorate('metricsServer', metricsServer);
  // Operators' surfaces: outside the /v1 scope, without CORS, only when ADMIN_TOKEN is set.
  if (config.adminToken) await app.register(adminRoutes, { token: config.adminToken, usage: () => services.spend.report() });

  app.addHook('onReady', async () => services.start());
  // SIGTERM: mints in flight get what is left of SHUTDOWN_TIMEOUT_MS (less a second to answer),
  // so each ends with an answer (a minted secret, or a 503 to retry elsewhere) before the exit.
  app.addHook('preClose', async () => {
    const timeout = config.shutdownTimeoutMs;
    services.drain(Math.max(0, timeout - Math.min(1_000, timeout / 2)));
  });
  app.addHook('onClose', async () => {
    await metricsServer?.close();
    await services.close();
  });
  return app;
}
