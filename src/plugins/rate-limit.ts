import rateLimit, { type FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** onRequest hook: RATE_LIMIT_PER_MINUTE (and RATE_LIMIT_BURST per second) per client. */
    tokenRateLimit: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
  }
}

interface Limit {
  check: ReturnType<FastifyInstance['createRateLimit']>;
  window: string;
}

function tooMany(max: number, ttlMs: number, window: string): AppError {
  const retryAfter = Math.max(1, Math.ceil(ttlMs / 1000));
  const reset = new Date(Date.now() + ttlMs).toISOString();
  return new AppError(429, `Too many token requests (${max} per ${window}); retry in ${retryAfter} s.`, {
    reason: 'rate_limit',
    retryAfter,
    details: { limit: max, remaining: 0, reset_time: reset },
    headers: { 'x-ratelimit-limit': String(max), 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(retryAfter) },
  });
}

/** Per-client limits on minting, counted in the given store (in-process, or Redis with fallback). */
export const rateLimiting = fp(
  async function rateLimiting(app: FastifyInstance, opts: { config: Config; store: FastifyRateLimitStoreCtor }) {
    await app.register(rateLimit, { global: false, store: opts.store });
    const limits: Limit[] = [];
    if (opts.config.rateLimitBurst !== undefined) {
      limits.push({
        check: app.createRateLimit({
          max: opts.config.rateLimitBurst,
          timeWindow: 1000,
          keyGenerator: (request) => `s:${request.clientKey}`,
        }),
        window: 'second',
      });
    }
    limits.push({
      check: app.createRateLimit({
        max: opts.config.rateLimitPerMinute,
        timeWindow: 60_000,
        keyGenerator: (request) => `m:${request.clientKey}`,
      }),
      window: 'minute',
    });

    app.decorate('tokenRateLimit', async function tokenRateLimit(request: FastifyRequest, reply: FastifyReply) {
      for (const limit of limits) {
        const result = await limit.check(request);
        if (result.isAllowed) continue;
        if (result.isExceeded) throw tooMany(result.max, result.ttl, limit.window);
        if (limit.window === 'minute') {
          reply.header('x-ratelimit-limit', result.max);
          reply.header('x-ratelimit-remaining', result.remaining);
          reply.header('x-ratelimit-reset', result.ttlInSeconds);
        }
      }
    });
  },
  { name: 'rate-limiting', dependencies: ['request-context'] },
);
