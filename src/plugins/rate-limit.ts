import rateLimit, { type FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { OpenAPIV3 } from 'openapi-types';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import type { MintBudget } from '../usage/mint-budget.js';

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * onRequest hook of every minting route: the client's limits (per second, per minute, per day),
     * then the whole service's budget. Each counts only when the ones before it let the request by.
     */
    mintLimits: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
  }
}

type Check = ReturnType<FastifyInstance['createRateLimit']>;
type Window = 'second' | 'minute' | 'day';

const WINDOW_MS: Record<Window, number> = { second: 1_000, minute: 60_000, day: 86_400_000 };

/** What the answers of a route with limits say about them (the docs put these on every answer of such a route). */
export const RATE_LIMIT_HEADERS: Record<string, OpenAPIV3.HeaderObject> = {
  'RateLimit-Policy': {
    description: 'This client\'s limits (IETF draft-ietf-httpapi-ratelimit-headers): quota `q` per window of `w` seconds, e.g. `"minute";q=10;w=60, "day";q=100;w=86400`. Absent when the guards refused the request first (401, 403).',
    schema: { type: 'string' },
  },
  RateLimit: {
    description: 'What is left in each window: `r` requests, the window turns in `t` seconds, e.g. `"minute";r=9;t=60, "day";r=99;t=86400`.',
    schema: { type: 'string' },
  },
  'X-RateLimit-Limit': { description: 'The older form, for the minute window: requests allowed per minute.', schema: { type: 'integer', minimum: 0 } },
  'X-RateLimit-Remaining': { description: 'Requests left in this minute.', schema: { type: 'integer', minimum: 0 } },
  'X-RateLimit-Reset': { description: 'Seconds until the minute window turns.', schema: { type: 'integer', minimum: 0 } },
};

function retryAfterSeconds(ttlMs: number): number {
  return Math.max(1, Math.ceil(ttlMs / 1000));
}

function tooMany(window: Window, max: number, ttlMs: number, headers: Record<string, string>): AppError {
  const retryAfter = retryAfterSeconds(ttlMs);
  const quota = window === 'day';
  const message = quota
    ? `Daily quota of ${max} client secrets spent; retry in ${retryAfter} s.`
    : `Too many requests (${max} per ${window}); retry in ${retryAfter} s.`;
  return new AppError(429, message, {
    reason: quota ? 'quota' : 'rate_limit',
    retryAfter,
    details: { limit: max, remaining: 0, reset_time: new Date(Date.now() + ttlMs).toISOString() },
    headers,
  });
}

/**
 * Per-client limits and the global budget, counted in the given store (in-process, or Redis with
 * in-process fallback). Answers carry the IETF RateLimit-Policy / RateLimit fields
 * (draft-ietf-httpapi-ratelimit-headers) and the older X-RateLimit-* ones for the minute limit.
 */
export const rateLimiting = fp(
  async function rateLimiting(
    app: FastifyInstance,
    opts: {
      config: Pick<Config, 'rateLimitBurst' | 'rateLimitPerMinute' | 'mintsPerClientPerDay'>;
      store: FastifyRateLimitStoreCtor;
      budget: MintBudget;
      log: FastifyBaseLogger;
    },
  ) {
    const { config, budget } = opts;
    await app.register(rateLimit, { global: false, store: opts.store });

    const clientLimits: { window: Window; max: number; check: Check }[] = [];
    const perClient = (window: Window, max: number | undefined) => {
      if (!max) return;
      const prefix = window[0];
      clientLimits.push({
        window,
        max,
        check: app.createRateLimit({ max, timeWindow: WINDOW_MS[window], keyGenerator: (request) => `${prefix}:${request.clientKey}` }),
      });
    };
    perClient('second', config.rateLimitBurst);
    perClient('minute', config.rateLimitPerMinute);
    perClient('day', config.mintsPerClientPerDay);
    const policy = clientLimits.map((l) => `"${l.window}";q=${l.max};w=${WINDOW_MS[l.window] / 1000}`).join(', ');

    const budgetChecks = budget.windows.map((w) => ({
      state: w,
      check: app.createRateLimit({ max: w.limit, timeWindow: WINDOW_MS[w.window], keyGenerator: () => `g${w.window[0]}:all` }),
    }));

    app.decorate('mintLimits', async function mintLimits(request: FastifyRequest, reply: FastifyReply) {
      const remaining: string[] = [];
      for (const limit of clientLimits) {
        const result = await limit.check(request);
        // isAllowed: an allow-list hit; there is no allow-list, but it narrows the type.
        if (result.isAllowed) continue;
        if (result.isExceeded) {
          remaining.push(`"${limit.window}";r=0;t=${retryAfterSeconds(result.ttl)}`);
          const headers: Record<string, string> = { 'ratelimit-policy': policy, ratelimit: remaining.join(', ') };
          if (limit.window === 'minute') {
            Object.assign(headers, { 'x-ratelimit-limit': String(result.max), 'x-ratelimit-remaining': '0', 'x-ratelimit-reset': String(retryAfterSeconds(result.ttl)) });
          }
          throw tooMany(limit.window, result.max, result.ttl, headers);
        }
        remaining.push(`"${limit.window}";r=${result.remaining};t=${result.ttlInSeconds}`);
        if (limit.window === 'minute') {
          reply.header('x-ratelimit-limit', result.max);
          reply.header('x-ratelimit-remaining', result.remaining);
          reply.header('x-ratelimit-reset', result.ttlInSeconds);
        }
      }
      if (policy !== '') {
        reply.header('ratelimit-policy', policy);
        reply.header('ratelimit', remaining.join(', '));
      }

      for (const { state, check } of budgetChecks) {
        const result = await check(request);
        if (result.isAllowed) continue;
        state.used = result.max - result.remaining + (result.isExceeded ? 1 : 0);
        state.resetAt = Date.now() + result.ttl;
        if (result.isExceeded) {
          throw new AppError(503, `The service's ${state.window} budget of client secrets is spent; try again when it turns.`, {
            reason: 'budget',
            retryAfter: retryAfterSeconds(result.ttl),
            logContext: { budget: state.window, budget_limit: state.limit },
          });
        }
        // Once per window (the reset time of one window wobbles by a few ms between answers).
        if (state.used >= 0.8 * state.limit && state.resetAt - state.warnedFor > 1_000) {
          state.warnedFor = state.resetAt;
          opts.log.warn(
            { budget: state.window, budget_used: state.used, budget_limit: state.limit },
            `global ${state.window} budget 80 % used`,
          );
        }
      }
    });
  },
  { name: 'rate-limiting', dependencies: ['client-address'] },
);
