import type { FastifyInstance } from 'fastify';
import { AppError } from '../errors.js';
import type { ServiceMetrics } from '../metrics.js';
import { operatorTokenCheck } from '../operator-token.js';

/**
 * Prometheus text. Not origin-checked or rate limited; with METRICS_TOKEN every scrape must bring it
 * as a bearer, and with METRICS_PORT this route lives on that port alone (app.ts).
 */
export async function metricsRoutes(app: FastifyInstance, opts: { metrics: ServiceMetrics; token: string | undefined }) {
  const authorized = opts.token === undefined ? undefined : operatorTokenCheck(opts.token, { basic: false });
  app.get(
    '/metrics',
    {
      schema: { hide: true },
      config: { quietAccessLog: true, servesWhenOverloaded: true, cors: false },
      onRequest: async (request) => {
        if (authorized && !authorized(request.headers.authorization)) {
          throw new AppError(401, 'A bearer METRICS_TOKEN is required to scrape /metrics.', {
            reason: 'operator_auth',
            headers: { 'www-authenticate': 'Bearer realm="metrics"' },
          });
        }
      },
    },
    async (_request, reply) => {
      reply.header('content-type', opts.metrics.registry.contentType);
      return opts.metrics.registry.metrics();
    },
  );
}
