import rateLimit, { type FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { OpenAPIV3 } from 'openapi-types';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import type { MintBudget } from '../usage/mint-budget.js';
import type { MintKind, SpendControl } from '../usage/spend.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** onRequest of every spending route: the client's limits per second and per minute. */
    mintLimits: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
    /**
     * preHandler of every spending route, so only a request that passed its limits and its
     * validation counts: the client's daily quota and spend cap, the global spend cap (all in the
     * usage ledger, where other clients' traffic cannot evict them), then the service's mint budget.
     */
    mintAllowance: (request: FastifyRequest, reply: FastifyReply, kind: MintKind) => Promise<void>;
  }
  interface FastifyRequest {
    /** Gives back what mintAllowance counted, when the request then fails (no secret, no call). */
    mintRefund: (() => void) | undefined;
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
  return new AppError(429, `Too many requests (${max} per ${window}); retry in ${retryAfter} s.`, {
    reason: 'rate_limit',
    retryAfter,
    details: { limit: max, remaining: 0, reset_time: new Date(Date.now() + ttlMs).toISOString() },
    headers,
  });
}

/**
 * Per-client limits and the global budget, counted in the given store (in-process, or Redis with
 * in-process fallback); the daily quota and the spend caps in the usage ledger. Answers carry the
 * IETF RateLimit-Policy / RateLimit fields (draft-ietf-httpapi-ratelimit-headers) and the older
 * X-RateLimit-* ones for the minute limit.
 */
export const rateLimiting = fp(
  async function rateLimiting(
    app: FastifyInstance,
    opts: {
      config: Pick<Config, 'rateLimitBurst' | 'rateLimitPerMinute' | 'mintsPerClientPerDay'>;
      store: FastifyRateLimitStoreCtor;
      budget: MintBudget;
      spend: SpendControl;
      log: FastifyBaseLogger;
    },
  ) {
    const { config, budget, spend } = opts;
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
    const windows = clientLimits.map(({ window, max }) => ({ window, max }));
    // The daily quota is the usage ledger's: a day window must not sit in the limiter's shared LRU,
    // where other clients' traffic would evict it.
    if (config.mintsPerClientPerDay > 0) windows.push({ window: 'day', max: config.mintsPerClientPerDay });
    const policy = windows.map((l) => `"${l.window}";q=${l.max};w=${WINDOW_MS[l.window] / 1000}`).join(', ');

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
    });

    app.decorateRequest('mintRefund', undefined);
    app.decorate('mintAllowance', async function mintAllowance(request: FastifyRequest, reply: FastifyReply, kind: MintKind) {
      const admission = await spend.admitMint(request.clientKey, kind);
      if (admission.day) {
        const { remaining, resetMs } = admission.day;
        const day = `"day";r=${remaining};t=${retryAfterSeconds(resetMs)}`;
        const before = reply.getHeader('ratelimit');
        const fields = typeof before === 'string' && before !== '' ? `${before}, ${day}` : day;
        if (!admission.admitted) Object.assign(admission.error.headers, { 'ratelimit-policy': policy, ratelimit: fields });
        else reply.header('ratelimit', fields);
      }
      if (!admission.admitted) throw admission.error;
      request.mintRefund = admission.refund;

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
