import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { JWTVerifyGetKey } from 'jose';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import { boundedJwksFetch } from '../jwks-fetch.js';
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
const CLOCK_TOLERANCE_SECONDS = 30;
/**
 * The longest lifetime a token may claim (exp after iat, or after now without iat). Sign-in
 * providers issue tokens for minutes to an hour; one for 50 years is a leaked signing key's work.
 */
export const MAX_TOKEN_LIFETIME_SECONDS = 24 * 3600;

export interface JwtVerifierOptions {
  /** Between two JWKS fetches for an unknown `kid` (jose's cooldown); tests shorten it. */
  jwksCooldownMs?: number;
  /** The wait after a failed JWKS fetch (doubling after each further one); tests shorten it. */
  jwksFailureBackoffMs?: number;
}

/** Why a verified token's claimed lifetime is refused, or undefined when it is sane. */
function lifetimeProblem(iat: number | undefined, exp: number | undefined, nowSeconds: number): string | undefined {
  if (iat !== undefined && iat > nowSeconds + CLOCK_TOLERANCE_SECONDS) return 'iat_in_future';
  if (exp !== undefined && exp - Math.min(iat ?? nowSeconds, nowSeconds) > MAX_TOKEN_LIFETIME_SECONDS) return 'lifetime_too_long';
  return undefined;
}

/** Verifies `Authorization: Bearer <JWT>` against AUTH_JWKS_URL or AUTH_JWT_SECRET; resolves to `sub`. */
async function jwtVerifier(config: Pick<Config, 'authJwksUrl' | 'authJwtSecret' | 'authIssuer' | 'authAudience'>, options: JwtVerifierOptions = {}): Promise<((authorization: string | undefined) => Promise<string>) | undefined> {
  if (!config.authJwksUrl && !config.authJwtSecret) return undefined;
  // jose only when authentication is on: without it, its modules would sit in the heap unused.
  const { createRemoteJWKSet, customFetch, errors: joseErrors, jwtVerify } = await import('jose');
  let key: Uint8Array | JWTVerifyGetKey;
  let algorithms: string[];
  if (config.authJwksUrl) {
    key = createRemoteJWKSet(new URL(config.authJwksUrl), {
      timeoutDuration: 3_000,
      cooldownDuration: options.jwksCooldownMs ?? 30_000,
      cacheMaxAge: 10 * 60_000,
      // Body capped, and a backoff after failures (jose's cooldown only follows a success).
      [customFetch]: boundedJwksFetch({ failureBackoffMs: options.jwksFailureBackoffMs }),
    });
    algorithms = JWKS_ALGORITHMS;
  } else {
    key = new TextEncoder().encode(config.authJwtSecret);
    algorithms = ['HS256'];
  }
  const verifyOptions = {
    algorithms,
    clockTolerance: CLOCK_TOLERANCE_SECONDS,
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
    let iat: number | undefined;
    try {
      // Both overloads of jwtVerify take the same options; TypeScript cannot pick one for a union key.
      ({
        payload: { sub, exp, iat },
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
    const problem = lifetimeProblem(iat, exp, Math.floor(Date.now() / 1000));
    if (problem) throw unauthorized('The bearer token claims a lifetime no sign-in provider issues.', { auth_failure: problem });
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
    const verify = await jwtVerifier(opts.config, opts.jwt);
    if (opts.config.authJwksUrl && opts.config.authAudience.length === 0) {
      app.log.warn('AUTH_JWKS_URL without AUTH_AUDIENCE: any token of this issuer is accepted, whatever app it was issued for; set AUTH_AUDIENCE');
    }
    app.decorate('authenticate', async function authenticate(request: FastifyRequest) {
      if (!verify) return;
      const sub = await verify(request.headers.authorization);
      request.userId = sub;
      request.clientKey = `user:${sub}`;
    });
  },
  { name: 'caller-auth', dependencies: ['client-address'] },
);
