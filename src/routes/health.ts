import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { CircuitBreaker } from '../openai/circuit-breaker.js';
import type { UpstreamHealth } from '../openai/upstream-health.js';
import type { RateLimitStoreState } from '../plugins/rate-limit-store.js';
import type { SecretPool } from '../realtime/secret-pool.js';

const healthSchema = z.object({
  status: z.literal('healthy'),
  timestamp: z.string().describe('ISO 8601'),
  version: z.string(),
  uptime_seconds: z.number(),
  openai_status: z.enum(['connected', 'disconnected', 'unknown']).describe(
    'Result of the last GET /models, cached for HEALTH_CHECK_INTERVAL seconds; unknown before the first check.',
  ),
  openai_checked_at: z.string().optional(),
  circuit_breaker: z.object({
    state: z.enum(['closed', 'open', 'half_open']),
    consecutive_failures: z.number().int(),
    retry_after_ms: z.number().int(),
  }),
  rate_limit_store: z.enum(['memory', 'redis', 'fallback']),
  token_pool: z.object({ size: z.number().int(), capacity: z.number().int() }).optional(),
});

export async function healthRoutes(
  app: FastifyInstance,
  opts: {
    version: string;
    upstreamHealth: UpstreamHealth;
    breaker: CircuitBreaker;
    rateLimitStore: RateLimitStoreState;
    pool: SecretPool | undefined;
  },
) {
  const startedAt = performance.now();
  app.withTypeProvider<ZodTypeProvider>().get(
    '/healthz',
    {
      config: { quietAccessLog: true, pressureHandler: () => undefined },
      schema: {
        tags: ['operations'],
        summary: 'Liveness and upstream status',
        description: '200 whenever the process serves. Not origin-checked, not rate limited.',
        response: { 200: healthSchema },
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
        rate_limit_store: opts.rateLimitStore.mode,
        token_pool: opts.pool ? { size: opts.pool.stats.size, capacity: opts.pool.stats.capacity } : undefined,
      };
    },
  );
}
