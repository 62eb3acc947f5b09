import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** True from the moment close() begins: /readyz fails and late requests are turned away. */
    readonly draining: boolean;
  }
  interface FastifyContextConfig {
    /** Served even while the event loop is stalled (health probes, scrapes): they must tell, not refuse. */
    servesWhenOverloaded?: boolean;
  }
}

export interface AdmissionOptions {
  /** A turn of the event loop late by more than this (ms) marks the process overloaded. */
  maxEventLoopDelayMs: number;
  /** How often the loop's lateness is sampled (ms); default 500. */
  sampleIntervalMs?: number;
}

/**
 * Whether a new request may start, in one onRequest hook:
 * - while the server closes, a request that still arrives on a kept-alive socket gets 503 in the
 *   one envelope (Fastify's own closing answer is not the envelope, so app.ts turns it off), and
 *   the requests already in flight finish;
 * - while the event loop is stalled (a timer came more than `maxEventLoopDelayMs` late), new work
 *   gets 503 with `retry_after` 5 until a timer comes on time again, except routes that declare
 *   `servesWhenOverloaded` (/healthz answers 200 whenever the process serves).
 *
 * The stall is measured by one unref'd interval timer: two wakeups a second. (@fastify/under-pressure,
 * used before, keeps a 10 ms event-loop-delay histogram running whatever it is asked to check: a
 * hundred wakeups a second, most of an idle replica's CPU.)
 */
export const admission = fp(
  async function admission(app: FastifyInstance, opts: AdmissionOptions) {
    let closing = false;
    app.decorate('draining', { getter: () => closing });
    app.addHook('preClose', async () => {
      closing = true;
    });

    const interval = opts.sampleIntervalMs ?? 500;
    let overloaded = false;
    let sampler: NodeJS.Timeout | undefined;
    // From ready on: the boot's own long turns are not an overload.
    app.addHook('onReady', async () => {
      let expectedAt = performance.now() + interval;
      sampler = setInterval(() => {
        const now = performance.now();
        overloaded = now - expectedAt > opts.maxEventLoopDelayMs;
        expectedAt = now + interval;
      }, interval);
      sampler.unref();
    });
    app.addHook('onClose', async () => clearInterval(sampler));

    app.addHook('onRequest', function admit(request, _reply, done) {
      if (closing) {
        return done(
          new AppError(503, 'The service is shutting down; retry shortly (another replica will answer).', {
            reason: 'not_ready',
            retryAfter: 1,
          }),
        );
      }
      if (overloaded && request.routeOptions.config.servesWhenOverloaded !== true) {
        return done(new AppError(503, 'The service is overloaded; try again shortly.', { reason: 'overloaded', retryAfter: 5 }));
      }
      done();
    });
  },
  { name: 'admission' },
);
