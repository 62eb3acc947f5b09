import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { AppError } from '../errors.js';
import type { CircuitBreaker } from '../openai/circuit-breaker.js';
import type { UpstreamHealth } from '../openai/upstream-health.js';
import type { SharedState, SharedStateMode } from '../redis.js';
import type { SecretPool } from '../realtime/secret-pool.js';
import { errorResponses, NO_STORE } from './error-responses.js';

const NOT_READY_MESSAGE = 'Not ready: OpenAI refused the API key (bad or revoked); the operator must fix OPENAI_API_KEY.';

const healthSchema = z.object({
  status: z.literal('healthy'),
  timestamp: z.string().describe('ISO 8601'),
  version: z.string(),
  uptime_seconds: z.number(),
  openai_status: z.enum(['connected', 'disconnected', 'unauthorized', 'unknown']).describe(
    'Result of the last readiness check (POST /realtime/client_secrets with a body OpenAI must refuse as invalid), cached for HEALTH_CHECK_INTERVAL seconds: unauthorized when OpenAI ' +
      'refused the key (401/403), disconnected when it did not answer usefully, unknown before the first check.',
  ),
  openai_checked_at: z.string().optional(),
  circuit_breaker: z.object({
    state: z.enum(['closed', 'open', 'half_open']),
    consecutive_failures: z.number().int(),
    retry_after_ms: z.number().int(),
  }),
  rate_limit_store: z.enum(['memory', 'redis', 'fallback']),
  redis: z
    .object({
      topology: z.enum(['single', 'cluster']),
      mode: z.enum(['redis', 'fallback']).describe('redis while it answers; fallback: counting in-process, not shared'),
      since: z.string().describe('ISO 8601: when mode last changed'),
      lost_writes_possible: z
        .boolean()
        .describe('This replica holds state Redis lacks (in fallback, and after a return until it is put back); see docs/redis.md'),
      note: z.string().optional().describe('What is degraded, in a sentence'),
    })
    .optional()
    .describe('Present when Redis is configured (REDIS_URL or REDIS_CLUSTER_NODES).'),
  usage_store: z
    .enum(['memory', 'redis', 'fallback'])
    .describe(
      'Where the daily quota and the spend windows are counted: fallback means counting locally while Redis is ' +
        'away (each replica goes on from the last totals it saw, so no cap is lifted; merged back when Redis returns).',
    ),
  token_pool: z.object({ size: z.number().int(), capacity: z.number().int() }).optional(),
}).describe('The process serves (liveness).');

const readySchema = z
  .object({
    status: z.literal('ready'),
    openai_status: healthSchema.shape.openai_status,
  })
  .describe('Ready: the process serves and OpenAI has not refused the key.');

export async function healthRoutes(
  app: FastifyInstance,
  opts: {
    version: string;
    upstreamHealth: UpstreamHealth;
    breaker: CircuitBreaker;
    sharedState: SharedState;
    usageStore: { readonly store: SharedStateMode };
    pool: SecretPool | undefined;
  },
) {
  const startedAt = performance.now();
  app.withTypeProvider<ZodTypeProvider>().get(
    '/healthz',
    {
      config: { quietAccessLog: true, servesWhenOverloaded: true },
      schema: {
        tags: ['operations'],
        summary: 'Liveness and upstream status',
        description: '200 whenever the process serves. Not origin-checked, not rate limited.',
        responseHeaders: { 200: { 'Cache-Control': NO_STORE } },
        response: {
          200: healthSchema,
          ...errorResponses([503], {
            503: {
              when: 'this replica is shutting down (a probe on a connection it still holds)',
              todo: 'nothing: the replica is going away; another answers',
              example: { message: 'The service is shutting down; retry shortly (another replica will answer).', extra: { retry_after: 1 } },
            },
          }),
        },
      },
    },
    async (_request, reply) => {
      const upstream = opts.upstreamHealth.snapshot();
      reply.header('cache-control', 'no-store');
      return {
        status: 'healthy' as const,
        timestamp: new Date().toISOString(),
        version: opts.version,
        uptime_seconds: Math.round((performance.now() - startedAt) / 1000),
        openai_status: upstream.status,
        openai_checked_at: upstream.checkedAt,
        circuit_breaker: {
          state: opts.breaker.state,
          consecutive_failures: opts.breaker.consecutiveFailures,
          retry_after_ms: Math.round(opts.breaker.retryAfterMs),
        },
        rate_limit_store: opts.sharedState.mode,
        redis: opts.sharedState.health(),
        usage_store: opts.usageStore.store,
        token_pool: opts.pool ? { size: opts.pool.stats.size, capacity: opts.pool.stats.capacity } : undefined,
      };
    },
  );

  app.withTypeProvider<ZodTypeProvider>().get(
    '/readyz',
    {
      config: { quietAccessLog: true },
      schema: {
        tags: ['operations'],
        summary: 'Readiness: may this replica take traffic?',
        description:
          '200 while the process serves and OpenAI has not refused the key; 503 (the error envelope) when ' +
          'the last upstream check got 401/403 or while shutting down. Cached like /healthz: a probe is ' +
          'never a call to OpenAI. Railway\'s deploy health check points here. Not origin-checked, not rate limited.',
        responseHeaders: { 200: { 'Cache-Control': NO_STORE } },
        response: {
          200: readySchema,
          ...errorResponses([503], {
            503: {
              when: 'OpenAI refused the API key at its last check (401/403: bad or revoked), or this replica is shutting down or overloaded; OpenAI being unreachable does not count',
              todo: 'send this replica no traffic; the operator fixes OPENAI_API_KEY (a deploy with a bad key fails here instead of replacing a good one)',
              example: { message: NOT_READY_MESSAGE },
            },
          }),
        },
      },
    },
    async (_request, reply) => {
      // While shutting down, the draining plugin has already answered 503 before this handler.
      if (!(await opts.upstreamHealth.keyAccepted())) {
        throw new AppError(503, NOT_READY_MESSAGE, { reason: 'not_ready' });
      }
      reply.header('cache-control', 'no-store');
      return { status: 'ready' as const, openai_status: opts.upstreamHealth.snapshot().status };
    },
  );
}
