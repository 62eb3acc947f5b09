import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import { MAX_LOGGED_CHARS } from '../limits.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** Requires and verifies the caller's JWT when authentication is on; else a no-op. Run by the /v1 guard. */
    authenticate: (request: FastifyRequest) => Promise<void>;
  }
}

function unauthorized(message: string, logContext?: Record<string, unknown>): AppError {
  return new AppError(401, message, {
    reason: 'auth',
    headers: { 'www-authenticate': 'Bearer error="invalid_token"' },
    logContext,
  });
}

// Asymmetric algorithms only from a JWKS (an HMAC "signed" with a public key is a classic forgery).
const JWKS_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];
// The scheme is case-insensitive (RFC 7235).
const BEARER = /^Bearer +([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*)$/i;

/** Verified tokens remembered at once (oldest forgotten first). */
const VERIFIED_TOKENS_KEPT = 10_000;

export interface JwtVerifierOptions {
  /** Between two JWKS fetches for an unknown `kid` (jose's cooldown); tests shorten it. */
  jwksCooldownMs?: number;
}

/** Verifies `Authorization: Bearer <JWT>` against AUTH_JWKS_URL or AUTH_JWT_SECRET; resolves to `sub`. */
function jwtVerifier(config: Pick<Config, 'authJwksUrl' | 'authJwtSecret' | 'authIssuer' | 'authAudience'>, options: JwtVerifierOptions = {}): ((authorization: string | undefined) => Promise<string>) | undefined {
  let key: Uint8Array | JWTVerifyGetKey;
  let algorithms: string[];
  if (config.authJwksUrl) {
    key = createRemoteJWKSet(new URL(config.authJwksUrl), {
      timeoutDuration: 3_000,
      cooldownDuration: options.jwksCooldownMs ?? 30_000,
      cacheMaxAge: 10 * 60_000,
    });
    algorithms = JWKS_ALGORITHMS;
  } else if (config.authJwtSecret) {
    key = new TextEncoder().encode(config.authJwtSecret);
    algorithms = ['HS256'];
  } else {
    return undefined;
  }
  const verifyOptions = {
    algorithms,
    clockTolerance: 30,
    // A token without an expiry would open sessions forever.
    requiredClaims: ['exp'],
    issuer: config.authIssuer,
    audience: config.authAudience.length > 0 ? [...config.authAudience] : undefined,
  };
  // A client sends the same JWT with each request for its lifetime: a token verified once is
  // taken again without the signature check (WebCrypto, the dearest step) until it expires, for a
  // minute at most (so a key the provider withdraws stops working within a minute), bounded.
  const verified = new Map<string, { sub: string; until: number }>();
  return async function verify(authorization) {
    const token = authorization === undefined ? undefined : BEARER.exec(authorization)?.[1];
    if (token === undefined) throw unauthorized('A bearer token (JWT) is required: Authorization: Bearer <token>.');
    const known = verified.get(token);
    if (known && known.until > Date.now()) return known.sub;
    if (known) verified.delete(token);
    let sub: unknown;
    let exp: number | undefined;
    try {
      // Both overloads of jwtVerify take the same options; TypeScript cannot pick one for a union key.
      ({
        payload: { sub, exp },
      } = await (typeof key === 'function' ? jwtVerify(token, key, verifyOptions) : jwtVerify(token, key, verifyOptions)));
    } catch (error) {
      // The token's fault: a JOSE error naming it. Ours: the JWKS did not come (timeout, network,
      // not 200 or not JSON: jose's generic error), which a client cannot fix.
      if (!(error instanceof joseErrors.JOSEError) || error.code === 'ERR_JOSE_GENERIC' || error instanceof joseErrors.JWKSTimeout) {
        throw new AppError(503, 'The caller cannot be authenticated right now; try again shortly.', {
          reason: 'auth',
          retryAfter: 5,
          logContext: { auth_failure: 'jwks_unavailable' },
        });
      }
      throw unauthorized('The bearer token is invalid or expired.', { auth_failure: error.code });
    }
    if (typeof sub !== 'string' || sub === '') throw unauthorized('The bearer token has no subject (sub).', { auth_failure: 'no_sub' });
    const user = sub.slice(0, MAX_LOGGED_CHARS);
    if (verified.size >= VERIFIED_TOKENS_KEPT) verified.delete(verified.keys().next().value as string);
    verified.set(token, { sub: user, until: Math.min((exp ?? 0) * 1000, Date.now() + 60_000) });
    return user;
  };
}

/**
 * Caller authentication: when AUTH_JWKS_URL or AUTH_JWT_SECRET is set, the verified user (`sub`)
 * becomes the client every limit counts against.
 */
export const callerAuth = fp(
  async function callerAuth(
    app: FastifyInstance,
    opts: { config: Pick<Config, 'authJwksUrl' | 'authJwtSecret' | 'authIssuer' | 'authAudience'>; jwt?: JwtVerifierOptions },
  ) {
    const verify = jwtVerifier(opts.config, opts.jwt);
    app.decorate('authenticate', async function authenticate(request: FastifyRequest) {
      if (!verify) return;
      const sub = await verify(request.headers.authorization);
      request.userId = sub;
      request.clientKey = `user:${sub}`;
    });
  },
  { name: 'caller-auth', dependencies: ['client-address'] },
);
