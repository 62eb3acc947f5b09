import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** True from the moment close() begins: /readyz fails and late requests are turned away. */
    readonly draining: boolean;
  }
}

/**
 * While the server closes, a request that still arrives on a kept-alive socket gets 503 in the one
 * envelope (Fastify's own closing answer is not the envelope, so app.ts turns it off), and the
 * requests already in flight finish.
 */
export const draining = fp(
  async function draining(app: FastifyInstance) {
    let closing = false;
    app.decorate('draining', { getter: () => closing });
    app.addHook('preClose', async () => {
      closing = true;
    });
    app.addHook('onRequest', (_request, _reply, done) => {
      if (!closing) return done();
      done(
        new AppError(503, 'The service is shutting down; retry shortly (another replica will answer).', {
          reason: 'not_ready',
          retryAfter: 1,
        }),
      );
    });
  },
  { name: 'draining' },
);
