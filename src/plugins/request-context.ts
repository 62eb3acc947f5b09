import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

declare module 'fastify' {
  interface FastifyRequest {
    /** The client as far as rate limits and audit lines are concerned (see clientAddress). */
    clientIp: string;
    /** Who every limit, quota, budget and call slot counts against (the address, or the user once authenticated). */
    clientKey: string;
  }
}

const WELL_FORMED_REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

/** Keeps a caller's well-formed X-Request-ID, replaces anything else. */
export function requestIdFor(req: IncomingMessage): string {
  const incoming = req.headers['x-request-id'];
  return typeof incoming === 'string' && WELL_FORMED_REQUEST_ID.test(incoming) ? incoming : randomUUID();
}

/**
 * The client address behind `trustedHops` proxies that each append to X-Forwarded-For: the entry
 * that many from the right. Entries to its left were written by the client and prove nothing.
 */
export function clientAddress(req: IncomingMessage, trustedHops: number): string {
  const peer = req.socket.remoteAddress ?? 'unknown';
  if (trustedHops === 0) return peer;
  const header = req.headers['x-forwarded-for'];
  if (header === undefined) return peer;
  const hops = (Array.isArray(header) ? header.join(',') : header)
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  if (hops.length === 0) return peer;
  return (hops[Math.max(0, hops.length - trustedHops)] as string).slice(0, 64);
}

/**
 * Request id on every response, the client address on every request, one access line per response,
 * and keep-alive drained on shutdown.
 */
export const requestContext = fp(
  async function requestContext(app: FastifyInstance, opts: { trustProxy: number }) {
    app.decorateRequest('clientIp', '');
    app.decorateRequest('clientKey', '');
    // Callback-style hooks: they run on every request and need no promise.
    app.addHook('onRequest', (request, reply, done) => {
      request.clientIp = clientAddress(request.raw, opts.trustProxy);
      request.clientKey = request.clientIp;
      reply.header('x-request-id', request.id);
      done();
    });
    // While closing, answers in flight end their keep-alive connection, or close() would wait for
    // the client to hang up (Fastify only closes connections that are idle when close() starts).
    let closing = false;
    app.addHook('preClose', async () => {
      closing = true;
    });
    app.addHook('onSend', (_request, reply, payload, done) => {
      if (closing) reply.header('connection', 'close');
      done(null, payload);
    });
    app.addHook('onResponse', (request, reply, done) => {
      const quiet = request.routeOptions.config?.quietAccessLog === true && reply.statusCode < 400;
      request.log[quiet ? 'debug' : 'info'](
        {
          method: request.method,
          url: request.url.slice(0, 200),
          status: reply.statusCode,
          ms: Math.round(reply.elapsedTime * 10) / 10,
          client_ip: request.clientIp,
        },
        'request completed',
      );
      done();
    });
  },
  { name: 'request-context' },
);

declare module 'fastify' {
  interface FastifyContextConfig {
    /** Successful answers of this route are logged at debug (health probes, scrapes). */
    quietAccessLog?: boolean;
  }
}
