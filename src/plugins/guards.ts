import type { FastifyInstance, onRequestHookHandler } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { originGuard } from './security.js';

declare module 'fastify' {
  interface FastifyInstance {
    /**
     * Every check a request must pass before it may cost the operator a session, in order: origin,
     * caller authentication, the client's limits and quota, the service's budget. A route that
     * mints (a secret or a call) takes all of them with `onRequest: app.mintGuards`.
     */
    mintGuards: onRequestHookHandler[];
    /**
     * Who is asking, without spending anything: origin and (when on) caller authentication. For
     * routes that act on something the caller already holds, e.g. ending its own call.
     */
    callerGuards: onRequestHookHandler[];
  }
}

/** The one guard chain of the minting routes. */
export const guards = fp(
  async function guards(app: FastifyInstance, opts: { config: Config }) {
    const caller = [originGuard(opts.config), app.authenticate] as onRequestHookHandler[];
    app.decorate('callerGuards', caller);
    app.decorate('mintGuards', [...caller, app.mintLimits] as onRequestHookHandler[]);
  },
  { name: 'guards', dependencies: ['security', 'identity', 'rate-limiting'] },
);
