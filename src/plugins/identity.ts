import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { normalizeIP } from '@fastify/rate-limit';
import type { FastifyBaseLogger, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { createRemoteJWKSet, errors as joseErrors, jwtVerify, type JWTVerifyGetKey } from 'jose';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** The client's address, parsed and canonical (see clientAddress); for logs. */
    clientIp: string;
    /**
     * Who every limit, quota, budget and call slot counts against: `ip:<address>` (an IPv6 client
     * by its RATE_LIMIT_IPV6_PREFIX network) or, once authenticated, `user:<sub>`.
     */
    clientKey: string;
    /** The authenticated caller's `sub`, when caller authentication is on and passed. */
    userId: string | undefined;
  }
  interface FastifyInstance {
    /** onRequest hook: requires and verifies the caller's JWT when authentication is on; else a no-op. */
    authenticate: (request: FastifyRequest, reply: FastifyReply) => Promise<void>;
  }
}

/** Longest header-derived value that goes into a key or a log line. */
export const MAX_LOGGED_CHARS = 200;

const IPV4_WITH_PORT = /^(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}$/;
const BRACKETED_IPV6 = /^\[([^\]]+)\](?::\d{1,5})?$/;

/**
 * One X-Forwarded-For entry (or a socket address) as a canonical IP address, or undefined when it
 * is not one: ports and brackets removed, a zone id dropped, `::ffff:a.b.c.d` mapped to IPv4.
 */
export function parseAddress(entry: string): string | undefined {
  let text = entry.trim();
  const v4 = IPV4_WITH_PORT.exec(text);
  if (v4?.[1]) text = v4[1];
  const v6 = BRACKETED_IPV6.exec(text);
  if (v6?.[1]) text = v6[1];
  const zone = text.indexOf('%');
  if (zone > 0 && text.includes(':')) text = text.slice(0, zone);
  if (isIP(text) === 0) return undefined;
  // 128: no masking, only normalization (lower case, compressed, IPv4-mapped to IPv4).
  return normalizeIP(text, 128);
}

/** The rate-limit key of an address: IPv4 as is, IPv6 by its /prefix network (one home gets a whole prefix). */
export function addressKey(address: string, ipv6Prefix: number): string {
  return isIP(address) === 6 ? `ip:${normalizeIP(address, ipv6Prefix)}/${ipv6Prefix}` : `ip:${address}`;
}

/**
 * The client address behind `trustedHops` proxies that each append to X-Forwarded-For: the entry
 * that many from the right (entries to its left were written by the client and prove nothing).
 * An entry that is not an IP address is no client: the socket peer is used and `onMisconfigured`
 * told why.
 */
export function clientAddress(
  req: IncomingMessage,
  trustedHops: number,
  onMisconfigured: (why: string) => void = () => undefined,
): string {
  const peer = parseAddress(req.socket.remoteAddress ?? '') ?? 'unknown';
  if (trustedHops === 0) return peer;
  const header = req.headers['x-forwarded-for'];
  const hops = (Array.isArray(header) ? header.join(',') : (header ?? ''))
    .split(',')
    .map((entry) => entry.trim())
    .filter((entry) => entry !== '');
  if (hops.length === 0) {
    onMisconfigured('TRUST_PROXY is set but a request came without X-Forwarded-For');
    return peer;
  }
  const entry = hops[Math.max(0, hops.length - trustedHops)] as string;
  const address = parseAddress(entry);
  if (address === undefined) {
    onMisconfigured('the trusted X-Forwarded-For entry is not an IP address (check TRUST_PROXY)');
    return peer;
  }
  return address;
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
export function jwtVerifier(config: Config, options: JwtVerifierOptions = {}): ((authorization: string | undefined) => Promise<string>) | undefined {
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
 * Who is asking: the parsed client address on every request (for logs, and the key of every limit),
 * and, when AUTH_JWKS_URL or AUTH_JWT_SECRET is set, the verified user on the routes that take
 * `app.authenticate`. Nothing else parses X-Forwarded-For.
 */
export const identity = fp(
  async function identity(app: FastifyInstance, opts: { config: Config; log: FastifyBaseLogger; jwt?: JwtVerifierOptions }) {
    const { trustProxy, rateLimitIpv6Prefix } = opts.config;
    let warned = false;
    const misconfigured = (why: string) => {
      if (warned) return;
      warned = true;
      opts.log.warn({ trust_proxy: trustProxy }, `client address: ${why}; using the socket peer (logged once)`);
    };
    app.decorateRequest('clientIp', '');
    app.decorateRequest('clientKey', '');
    app.decorateRequest('userId', undefined);
    app.addHook('onRequest', (request, _reply, done) => {
      request.clientIp = clientAddress(request.raw, trustProxy, misconfigured);
      request.clientKey = addressKey(request.clientIp, rateLimitIpv6Prefix);
      done();
    });

    const verify = jwtVerifier(opts.config, opts.jwt);
    app.decorate('authenticate', async function authenticate(request: FastifyRequest) {
      if (!verify) return;
      const sub = await verify(request.headers.authorization);
      request.userId = sub;
      request.clientKey = `user:${sub}`;
    });
  },
  { name: 'identity' },
);
