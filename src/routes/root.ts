import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { SecretPool } from '../realtime/secret-pool.js';

const rootSchema = z.object({
  service: z.string(),
  version: z.string(),
  status: z.literal('running'),
  endpoints: z.record(z.string(), z.string()),
  token_pool: z
    .object({
      size: z.number().int(),
      capacity: z.number().int(),
      hits: z.number().int(),
      misses: z.number().int(),
      expired: z.number().int(),
    })
    .optional()
    .describe('Present when TOKEN_POOL_SIZE > 0.'),
}).describe('The service, its version and its endpoints.');

export async function rootRoutes(
  app: FastifyInstance,
  opts: { version: string; metricsEnabled: boolean; pool: SecretPool | undefined },
) {
  const endpoints: Record<string, string> = {
    token: 'POST /v1/realtime/token',
    call: 'POST /v1/realtime/calls',
    hangup: 'DELETE /v1/realtime/calls/{call_id}',
    health: 'GET /healthz',
    ready: 'GET /readyz',
    docs: 'GET /docs',
    openapi: 'GET /openapi.json',
  };
  if (opts.metricsEnabled) endpoints.metrics = 'GET /metrics';

  app.withTypeProvider<ZodTypeProvider>().get(
    '/',
    {
      schema: { tags: ['operations'], summary: 'Service information', response: { 200: rootSchema } },
    },
    async () => ({
      service: 'realtime-token-service',
      version: opts.version,
      status: 'running' as const,
      endpoints,
      token_pool: opts.pool?.stats,
    }),
  );
}
