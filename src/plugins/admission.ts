import { monitorEventLoopDelay } from 'node:perf_hooks';
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

/** About 28 hours of samples at 100 ms. */
const RESET_AFTER_SAMPLES = 1_000_000;

export interface AdmissionOptions {
  /** A mean event-loop delay over a window above this (ms) marks the process overloaded; unset or Infinity: no overload check. */
  maxEventLoopDelayMs?: number;
  /** How often the delay is sampled (ms); default 100. */
  resolutionMs?: number;
  /** Over how long the delay is averaged, and how often overload is decided (ms); default 1000. */
  windowMs?: number;
}

/**
 * The loop's mean delay over each window (a second), as @fastify/under-pressure measures it, but
 * sampled every 100 ms instead of its fixed 10 ms: ten wakeups a second rather than a hundred. One
 * long stall in an otherwise responsive second is not an overload; a second the loop spent stuck is.
 * With no finite `maxEventLoopDelayMs`, nothing is measured and `now` stays false.
 */
function watchOverload(app: FastifyInstance, opts: AdmissionOptions): { readonly now: boolean } {
  const state = { now: false };
  const maxDelay = opts.maxEventLoopDelayMs;
  if (maxDelay === undefined || !Number.isFinite(maxDelay)) return state;
  const resolution = opts.resolutionMs ?? 100;
  const histogram = monitorEventLoopDelay({ resolution });
  let sampler: NodeJS.Timeout | undefined;
  // Each window reads what the histogram gained since the last one. It is not reset per window:
  // a reset also forgets when the loop last ticked, so a stall that ended just before a window
  // closed was dropped whenever the window's check ran before the loop's next tick.
  let seenCount = 0;
  let seenTotalNs = 0;
  const decide = () => {
    const count = histogram.count;
    const totalNs = count === 0 ? 0 : histogram.mean * count;
    const added = count - seenCount;
    // No sample at all in a whole window: the loop was stuck throughout.
    const delay = added === 0 ? Number.POSITIVE_INFINITY : (totalNs - seenTotalNs) / added / 1e6 - resolution;
    state.now = delay > maxDelay;
    seenCount = count;
    seenTotalNs = totalNs;
    // A day or more of samples: start over, so the running total stays well within a double's precision.
    if (count > RESET_AFTER_SAMPLES) {
      histogram.reset();
      seenCount = 0;
      seenTotalNs = 0;
    }
  };
  // From ready on: the boot's own long turns are not an overload.
  app.addHook('onReady', async () => {
    histogram.enable();
    sampler = setInterval(decide, opts.windowMs ?? 1_000);
    sampler.unref();
  });
  app.addHook('onClose', async () => {
    clearInterval(sampler);
    histogram.disable();
  });
  return state;
}

/**
 * Whether a new request may start, in one onRequest hook:
 * - while the server closes, a request that still arrives on a kept-alive socket gets 503 in the
 *   one envelope (Fastify's own closing answer is not the envelope, so app.ts turns it off), and
 *   the requests already in flight finish;
 * - while the event loop is stalled (its mean delay over the last second above
 *   `maxEventLoopDelayMs`), new work gets 503 with `retry_after` 5 until a second goes by in which
 *   it is not, except routes that declare `servesWhenOverloaded` (/healthz answers 200 whenever
 *   the process serves).
 *
 * (@fastify/under-pressure, used before, measures the same but with a 10 ms histogram it keeps
 * running whatever it is asked to check: a hundred wakeups a second, most of an idle replica's CPU.)
 */
export const admission = fp(
  async function admission(app: FastifyInstance, opts: AdmissionOptions) {
    let closing = false;
    app.decorate('draining', { getter: () => closing });
    app.addHook('preClose', async () => {
      closing = true;
    });

    const overload = watchOverload(app, opts);

    app.addHook('onRequest', function admit(request, _reply, done) {
      if (closing) {
        return done(
          new AppError(503, 'The service is shutting down; retry shortly (another replica will answer).', {
            reason: 'not_ready',
            retryAfter: 1,
          }),
        );
      }
      if (overload.now && request.routeOptions.config.servesWhenOverloaded !== true) {
        return done(new AppError(503, 'The service is overloaded; try again shortly.', { reason: 'overloaded', retryAfter: 5 }));
      }
      done();
    });
  },
  { name: 'admission' },
);
