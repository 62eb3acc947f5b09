import underPressure from '@fastify/under-pressure';
import Fastify, { LogController, type FastifyBaseLogger, type FastifyInstance } from 'fastify';
import { validatorCompiler } from 'fastify-type-provider-zod';
import type { Logger } from 'pino';
import type { Config } from './config.js';
import { AppError, errorHandling } from './errors.js';
import { createLogger } from './logger.js';
import { ServiceMetrics } from './metrics.js';
import { CircuitBreaker } from './openai/circuit-breaker.js';
import { OpenAIClient } from './openai/client.js';
import { UpstreamHealth } from './openai/upstream-health.js';
import { docs } from './plugins/docs.js';
import { guards } from './plugins/guards.js';
import { rateLimiting } from './plugins/rate-limit.js';
import { createRedis, failoverStore, localStore, RateLimitStoreState } from './plugins/rate-limit-store.js';
import { requestContext, requestIdFor } from './plugins/request-context.js';
import { security } from './plugins/security.js';
import { CallManager } from './realtime/calls.js';
import { MemoryCallStore, RedisCallStore } from './realtime/calls-store.js';
import { SecretMinter } from './realtime/minter.js';
import { SecretPool } from './realtime/secret-pool.js';
import { callsRoutes } from './routes/calls.js';
import { healthRoutes } from './routes/health.js';
import { metricsRoutes } from './routes/metrics.js';
import { rootRoutes } from './routes/root.js';
import { tokenRoutes } from './routes/token.js';
import { VERSION } from './version.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Relayed calls and their deadlines (tests drive the deadline loop through it). */
    calls: CallManager;
  }
}

export const BODY_LIMIT_BYTES = 16 * 1024;

/** What a test (or the server) may swap: no module is monkey-patched. */
export interface AppDeps {
  logger?: Logger;
  /** Milliseconds since the epoch: breaker cooldowns, pool expiry, upstream health cache (upstream
   * deadlines use the monotonic clock). */
  now?: () => number;
  /** Backoff jitter. */
  random?: () => number;
}

/** Builds the whole service without listening. */
export async function buildApp(config: Config, deps: AppDeps = {}): Promise<FastifyInstance> {
  const logger: FastifyBaseLogger = deps.logger ?? createLogger(config);
  const now = deps.now ?? Date.now;
  const metrics = new ServiceMetrics(config.metricsEnabled);

  const client = new OpenAIClient({
    baseUrl: config.openaiBaseUrl,
    apiKey: config.openaiApiKey,
    timeoutMs: config.openaiTimeoutMs,
    maxRetries: config.openaiMaxRetries,
    random: deps.random,
    onAttempt: (operation, outcome, seconds) => metrics.observeUpstream(operation, outcome, seconds),
  });
  const breaker = new CircuitBreaker({
    threshold: config.circuitBreakerThreshold,
    cooldownMs: config.circuitBreakerCooldownMs,
    now,
    onTransition: (from, to, consecutiveFailures) => {
      logger[to === 'open' ? 'warn' : 'info'](
        { breaker_from: from, breaker_to: to, consecutive_failures: consecutiveFailures },
        `circuit breaker ${to}`,
      );
    },
  });
  const minter = new SecretMinter(config, client, breaker);
  const poolLog = logger.child({ component: 'token-pool' });
  const pool =
    config.tokenPoolSize > 0
      ? new SecretPool({
          size: config.tokenPoolSize,
          minRemainingSeconds: config.tokenPoolMinRemainingSeconds,
          refillPerSecond: config.tokenPoolRefillPerSecond,
          mint: () => minter.mintDefault(poolLog),
          upstreamWaitMs: () => breaker.retryAfterMs,
          log: poolLog,
          now,
        })
      : undefined;
  if (pool) minter.usePool(pool);
  const upstreamHealth = new UpstreamHealth(
    () => client.checkHealth(Math.min(5_000, config.openaiTimeoutMs)),
    config.healthCheckIntervalSeconds * 1000,
    now,
  );
  const redis = config.redisUrl ? await createRedis(config.redisUrl) : undefined;
  const storeState = new RateLimitStoreState(redis !== undefined, logger);
  // Relayed calls: deadlines shared in Redis when there is one (any replica hangs up what is due).
  const calls = new CallManager({
    config,
    client,
    breaker,
    shared: redis ? new RedisCallStore(redis) : undefined,
    local: new MemoryCallStore(),
    log: logger.child({ component: 'calls' }),
    now,
    random: deps.random ?? Math.random,
    onEnded: (reason) => metrics.callsEnded.inc({ reason }),
    onHangupFailure: () => metrics.hangupFailures.inc(),
  });
  metrics.watchCalls(() => calls.activeCount());
  metrics.watch({
    breakerState: () => breaker.state,
    rateLimitStore: () => storeState.mode,
    pool: pool ? () => pool.stats : undefined,
  });

  const app = Fastify({
    loggerInstance: logger,
    genReqId: requestIdFor,
    requestIdHeader: false,
    // One access line per response comes from the request-context plugin instead.
    logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'request_id' }),
    bodyLimit: BODY_LIMIT_BYTES,
    // Longer than a proxy's idle timeout, so the proxy, not us, closes idle keep-alive sockets.
    keepAliveTimeout: 65_000,
    // A mint can take up to the client's deadline; nothing else should take longer.
    requestTimeout: client.deadlineMs + 5_000,
    return503OnClosing: true,
  });

  // zod validates what comes in. What goes out is built field by field by handlers whose return
  // types TypeScript checks against the same zod schemas (which also drive the docs), so the
  // response is serialized as is instead of walked by zod again on every request.
  app.setValidatorCompiler(validatorCompiler);
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));

  // JSON only (anything else is a 415); an empty body means "all defaults".
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if ((body as string).trim() === '') return done(null, undefined);
    return parseJson(request, body as string, done);
  });

  await app.register(errorHandling, {
    onRefusal: (request, error) => {
      metrics.refusals.inc({ reason: error.reason });
      request.log[error.statusCode >= 500 ? 'warn' : 'info'](
        {
          refusal: error.reason,
          status: error.statusCode,
          origin: request.headers.origin,
          client_ip: request.clientIp,
          ...error.logContext,
        },
        'request refused',
      );
    },
  });
  await app.register(requestContext, { trustProxy: config.trustProxy });
  await app.register(underPressure, {
    // Event-loop delay, not utilization: a busy but responsive server (ELU near 1 under load) keeps serving.
    maxEventLoopDelay: 1_000,
    // under-pressure sends whatever the handler returns; its typings only admit void.
    pressureHandler: (() =>
      new AppError(503, 'The service is overloaded; try again shortly.', {
        reason: 'overloaded',
        retryAfter: 5,
      })) as unknown as () => void,
  });
  await app.register(security, { config });
  await app.register(rateLimiting, {
    config,
    store: redis ? failoverStore(redis, storeState) : localStore(),
  });
  await app.register(guards, { config });
  await app.register(docs, { version: VERSION });

  await app.register(rootRoutes, { version: VERSION, metricsEnabled: config.metricsEnabled, pool });
  await app.register(healthRoutes, { version: VERSION, upstreamHealth, breaker, rateLimitStore: storeState, pool });
  await app.register(tokenRoutes, { config, minter, metrics });
  await app.register(callsRoutes, { config, calls, metrics });
  app.decorate('calls', calls);
  if (config.metricsEnabled) await app.register(metricsRoutes, { metrics });

  app.addHook('onReady', async () => {
    // Not awaited: the service answers (on in-process limits) while Redis connects.
    redis?.connect().catch(() => undefined);
    pool?.start();
    calls.watch();
  });
  app.addHook('onClose', async () => {
    pool?.close();
    // Before the client closes: hangups in flight finish; deadlines in Redis stay for the others.
    await calls.close();
    await upstreamHealth.settled();
    await client.close();
    if (redis) await redis.quit().catch(() => redis.disconnect());
  });
  return app;
}
