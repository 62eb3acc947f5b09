import type { FastifyInstance, FastifyReply, FastifyRequest, HookHandlerDoneFunction, RouteOptions } from 'fastify';
import type { Config } from '../../config.js';
import type { ServiceMetrics } from '../../metrics.js';
import { originCheck } from '../../plugins/security.js';
import type { CallManager } from '../../realtime/calls.js';
import type { SecretMinter } from '../../realtime/minter.js';
import type { SpendControl } from '../../usage/spend.js';
import { callsRoutes } from './calls.js';
import { tokenRoutes } from './token.js';

declare module 'fastify' {
  interface FastifyContextConfig {
    /**
     * The route can cost the operator money: it mints a secret (charged SECRET_SPEND_ESTIMATE_USD
     * while a spend cap is on) or starts a call (priced from its usage). Limits, quota and budget apply.
     */
    spends?: 'secret' | 'call';
    /** A /v1 route deliberately outside the guarded scope (none today). */
    public?: boolean;
    /** Set by the /v1 scope on each of its routes: which guards run (the docs read it). */
    guard?: 'caller' | 'spends';
  }
  interface FastifyInstance {
    /** Present on the /v1 scope and inside it only: the routes registered there are guarded. */
    readonly v1Scope?: true;
  }
}

/**
 * Root onRoute hook: a /v1 route registered anywhere but inside the guarded scope (and not declared
 * public) refuses to boot, so a new route cannot forget its guards.
 */
export function refuseUnguardedV1(this: FastifyInstance, route: RouteOptions): void {
  if (route.url !== '/v1' && !route.url.startsWith('/v1/')) return;
  if (this.hasDecorator('v1Scope') || route.config?.public === true) return;
  const methods = Array.isArray(route.method) ? route.method.join(',') : route.method;
  throw new Error(
    `${methods} ${route.url} is outside the guarded /v1 scope: register it in src/routes/v1/index.ts ` +
      '(or declare config: { public: true } if it must be open to anyone)',
  );
}

export interface V1Options {
  /** The slices its routes and its guard read. */
  config: Parameters<typeof tokenRoutes>[1]['config'] &
    Parameters<typeof callsRoutes>[1]['config'] &
    Pick<Config, 'allowedOrigins' | 'allowMissingOrigin' | 'authEnabled'>;
  minter: SecretMinter;
  calls: CallManager;
  metrics: ServiceMetrics;
  spend: SpendControl;
}

/**
 * Every /v1 route, behind one guard hook: the origin, then the caller's JWT (when on), then for a
 * route with `config: { spends }` the client's per-second and per-minute limits; once its request
 * is valid, the client's daily quota and spend cap and the service's budget (given back when the
 * request fails after all). Each counts only when the checks before it let the request by.
 */
export async function v1Routes(app: FastifyInstance, opts: V1Options) {
  app.decorate('v1Scope', true as const);
  app.addHook('onRoute', (route) => {
    route.config = { ...route.config, guard: route.config?.spends ? 'spends' : 'caller' };
  });

  const refusedOrigin = originCheck(opts.config);
  const authOn = opts.config.authEnabled;
  async function callerAndLimits(request: FastifyRequest, reply: FastifyReply, spends: boolean): Promise<void> {
    if (authOn) await app.authenticate(request);
    if (spends) await app.mintLimits(request, reply);
  }
  // One callback-style hook: no promise at all on a request that only needs the origin check.
  app.addHook('onRequest', function v1Guard(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
    const refused = refusedOrigin(request);
    if (refused) return done(refused);
    const spends = request.routeOptions.config.spends !== undefined;
    if (!authOn && !spends) return done();
    callerAndLimits(request, reply, spends).then(() => done(), done);
  });
  app.addHook('preHandler', function v1Allowance(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
    const kind = request.routeOptions.config.spends;
    if (kind === undefined) return done();
    app.mintAllowance(request, reply, kind).then(() => done(), done);
  });
  // A request that fails after its allowance (OpenAI refused, too many calls at once) got nothing: give it back.
  app.addHook('onResponse', function v1Refund(request: FastifyRequest, reply: FastifyReply, done: HookHandlerDoneFunction) {
    if (reply.statusCode >= 400) request.mintRefund?.();
    done();
  });

  await app.register(tokenRoutes, opts);
  await app.register(callsRoutes, opts);
}
