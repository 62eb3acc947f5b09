import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { AppError } from '../errors.js';

const WELL_FORMED_REQUEST_ID = /^[A-Za-z0-9._-]{1,128}$/;

/** Keeps a caller's well-formed X-Request-ID, replaces anything else. */
export function requestIdFor(req: IncomingMessage): string {
  const incoming = req.headers['x-request-id'];
  return typeof incoming === 'string' && WELL_FORMED_REQUEST_ID.test(incoming) ? incoming : randomUUID();
}

/** Request id on every response, one access line per response, and keep-alive drained on shutdown. */
export const requestContext = fp(
  async function requestContext(app: FastifyInstance) {
    // Callback-style hooks: they run on every request and need no promise.
    app.addHook('onRequest', (request, reply, done) => {
      reply.header('x-request-id', request.id);
      // RFC 9112: an HTTP/1.1 request without Host is a 400 (Node's own is a bare one, turned off in app.ts).
      if (request.raw.httpVersion === '1.1' && request.headers.host === undefined) {
        return done(new AppError(400, 'The request has no Host header (HTTP/1.1 requires one).', { reason: 'bad_request' }));
      }
      done();
    });
    // While closing (the draining plugin's flag), answers in flight end their keep-alive connection,
    // or close() would wait for the client to hang up (Fastify only closes connections that are
    // idle when close() starts).
    app.addHook('onSend', (_request, reply, payload, done) => {
      if (app.draining) reply.header('connection', 'close');
      done(null, payload);
    });
    app.decorateRequest('quietRefusal', false);
    app.addHook('onResponse', (request, reply, done) => {
      // Counted in the refusal summary line instead.
      if (request.quietRefusal) return done();
      const quiet = request.routeOptions.config?.quietAccessLog === true && reply.statusCode < 400;
      if (quiet && request.log.level !== 'debug' && request.log.level !== 'trace') return done();
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
  interface FastifyRequest {
    /** A refusal past the per-second quota of refusal lines: no refusal line, no access line. */
    quietRefusal: boolean;
  }
  interface FastifyContextConfig {
    /** Successful answers of this route are logged at debug (health probes, scrapes). */
    quietAccessLog?: boolean;
  }
}
