import type { FastifyInstance } from 'fastify';
import type { ServiceMetrics } from '../metrics.js';

/** Prometheus text. Not origin-checked or rate limited: keep it off the public network (README). */
export async function metricsRoutes(app: FastifyInstance, opts: { metrics: ServiceMetrics }) {
  app.get(
    '/metrics',
    { schema: { hide: true }, config: { quietAccessLog: true, pressureHandler: () => undefined } },
    async (_request, reply) => {
      reply.header('content-type', opts.metrics.registry.contentType);
      return opts.metrics.registry.metrics();
    },
  );
}
