import cors from '@fastify/cors';
import helmet from '@fastify/helmet';
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

/** onRequest hook of the token route: exact-match Origin and Referer checks, before any work. */
export function originGuard(config: Config) {
  const allowed = new Set(config.allowedOrigins);
  return async function originGuard(request: FastifyRequest): Promise<void> {
    const origin = request.headers.origin;
    if (origin === undefined) {
      if (!config.allowMissingOrigin) throw forbidden('An Origin header is required.');
    } else if (!allowed.has(origin)) {
      throw forbidden('This Origin is not allowed to request client secrets.');
    }
    const referer = request.headers.referer;
    if (referer !== undefined) {
      const from = refererOrigin(referer);
      if (from === undefined || !allowed.has(from)) throw forbidden('The Referer is not from an allowed origin.');
    }
  };
}

/** Security headers (helmet) and CORS for the configured origins only. */
export const security = fp(
  async function security(app: FastifyInstance, opts: { config: Config }) {
    const corsOrigins = new Set(opts.config.corsOrigins);
    await app.register(helmet, {
      // The JSON API needs no framing, the docs page only same-origin scripts (helmet's default CSP).
      crossOriginEmbedderPolicy: false,
    });
    await app.register(cors, {
      origin: (origin, callback) => callback(null, origin !== undefined && corsOrigins.has(origin)),
      methods: ['GET', 'POST', 'OPTIONS'],
      allowedHeaders: ['Content-Type', 'X-Request-ID'],
      exposedHeaders: [
        'X-Request-ID',
        'Retry-After',
        'X-RateLimit-Limit',
        'X-RateLimit-Remaining',
        'X-RateLimit-Reset',
      ],
      maxAge: 600,
    });
  },
  { name: 'security' },
);
