import type { IncomingMessage, ServerResponse } from 'node:http';
import cors from '@fastify/cors';
import helmet from 'helmet';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';

const ORIGIN_OF_URL = /^([a-z][a-z0-9+.-]*:\/\/[^/?#\s]+)/i;

/** scheme://host[:port] of a Referer, lower-cased as a browser serializes an origin. */
export function refererOrigin(referer: string): string | undefined {
  return ORIGIN_OF_URL.exec(referer)?.[1]?.toLowerCase();
}

function forbidden(message: string): AppError {
  return new AppError(403, message, { reason: 'origin' });
}

/** The /v1 scope's origin check: exact-match Origin and Referer, before any work. Undefined: allowed. */
export function originCheck(config: Pick<Config, 'allowedOrigins' | 'allowMissingOrigin'>) {
  const allowed = new Set(config.allowedOrigins);
  return function refusedOrigin(request: FastifyRequest): AppError | undefined {
    const origin = request.headers.origin;
    if (origin === undefined) {
      if (!config.allowMissingOrigin) return forbidden('An Origin header is required.');
    } else if (!allowed.has(origin)) {
      return forbidden('This Origin is not allowed to request client secrets.');
    }
    const referer = request.headers.referer;
    if (referer !== undefined) {
      const from = refererOrigin(referer);
      if (from === undefined || !allowed.has(from)) return forbidden('The Referer is not from an allowed origin.');
    }
    return undefined;
  };
}

/**
 * helmet's headers, worked out once. They do not depend on the request, and @fastify/helmet builds
 * the helmet middleware (CSP parsing included) again on every request: a few % of a mint's CPU.
 */
export function helmetHeaders(): Record<string, string> {
  const headers: Record<string, string> = {};
  const response = {
    setHeader: (name: string, value: string | number) => (headers[name.toLowerCase()] = String(value)),
    removeHeader: (name: string) => delete headers[name.toLowerCase()],
  } as unknown as ServerResponse;
  // The JSON API needs no framing; the docs page needs only same-origin scripts (the default CSP).
  helmet({ crossOriginEmbedderPolicy: false })({} as IncomingMessage, response, () => undefined);
  return headers;
}

/** Security headers (helmet's defaults) and CORS for the configured origins only. */
export const security = fp(
  async function security(app: FastifyInstance, opts: { config: Pick<Config, 'corsOrigins'> }) {
    const corsOrigins = new Set(opts.config.corsOrigins);
    const headers = helmetHeaders();
    app.addHook('onRequest', (_request, reply, done) => {
      reply.headers(headers);
      done();
    });
    await app.register(cors, {
      origin: (origin, callback) => callback(null, origin !== undefined && corsOrigins.has(origin)),
      methods: ['GET', 'POST', 'DELETE', 'OPTIONS'],
      // Authorization: the caller's JWT (and what the official Agents SDK always sends on a call).
      allowedHeaders: ['Content-Type', 'X-Request-ID', 'Authorization', 'X-OpenAI-Agents-SDK'],
      exposedHeaders: [
        'X-Request-ID',
        'Retry-After',
        'RateLimit',
        'RateLimit-Policy',
        'X-RateLimit-Limit',
        'X-RateLimit-Remaining',
        'X-RateLimit-Reset',
        // A relayed call: its id (the SDK reads it from Location) and its hard end.
        'Location',
        'X-Call-Ends-At',
      ],
      maxAge: 600,
    });
  },
  { name: 'security' },
);
