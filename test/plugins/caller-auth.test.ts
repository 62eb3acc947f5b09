import { SignJWT } from 'jose';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { expectEnvelope, SITE_ORIGIN, useFakeOpenAI, type TestApp } from '../support/app.js';
import { JwksServer, signingKey, type SigningKey } from '../support/jwks-server.js';

const openai = useFakeOpenAI();

const ISSUER = 'https://auth.example.com/';
const AUDIENCE = 'parker-extension';

function token(key: SigningKey, claims: Record<string, unknown> = {}, options: { exp?: number | string; nbf?: number; iss?: string; aud?: string; sub?: string | null } = {}) {
  const jwt = new SignJWT(claims).setProtectedHeader({ alg: key.jwk.alg as string, kid: key.kid }).setIssuedAt();
  if (options.sub !== null) jwt.setSubject(options.sub ?? 'user_42');
  jwt.setIssuer(options.iss ?? ISSUER).setAudience(options.aud ?? AUDIENCE).setExpirationTime(options.exp ?? '5m');
  if (options.nbf !== undefined) jwt.setNotBefore(options.nbf);
  return jwt.sign(key.privateKey);
}

const b64 = (value: unknown) => Buffer.from(JSON.stringify(value)).toString('base64url');

describe('caller authentication with a JWKS (AUTH_JWKS_URL)', () => {
  let jwks: JwksServer;
  let key: SigningKey;
  let t: TestApp;

  beforeEach(async () => {
    jwks = await JwksServer.start();
    key = await signingKey('key-1');
    jwks.keys = [key.jwk];
    t = await openai.app(
      { AUTH_JWKS_URL: jwks.url, AUTH_ISSUER: ISSUER, AUTH_AUDIENCE: AUDIENCE, RATE_LIMIT_PER_MINUTE: '2' },
      { jwt: { jwksCooldownMs: 0 } },
    );
  });
  afterEach(async () => {
    await jwks.close();
  });

  const withBearer = (bearer: string | undefined, remoteAddress = '10.1.0.1') =>
    t.app.inject({
      method: 'POST',
      url: '/v1/realtime/token',
      remoteAddress,
      headers: { origin: SITE_ORIGIN, ...(bearer === undefined ? {} : { authorization: bearer }) },
    });

  function expectUnauthorized(response: Awaited<ReturnType<typeof withBearer>>) {
    expectEnvelope(response, 401);
    expect(response.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
    // CORS still lets the page read the refusal
    expect(response.headers['access-control-allow-origin']).toBe(SITE_ORIGIN);
  }

  it('a valid token mints; the audit line names the user, never the token', async () => {
    const jwt = await token(key);
    const response = await withBearer(`Bearer ${jwt}`);
    expect(response.statusCode).toBe(200);
    const audit = t.logs.find('client secret minted')[0];
    expect(audit).toMatchObject({ user: 'user_42', client_ip: '10.1.0.1' });
    expect(t.logs.raw).not.toContain(jwt);
    expect(t.logs.raw).not.toContain(jwt.split('.')[2]);
  });

  it.each([
    ['no Authorization header', async () => undefined],
    ['a Basic credential', async () => 'Basic dXNlcjpwYXNz'],
    ['an empty bearer', async () => 'Bearer '],
    ['expired beyond the 30 s tolerance', async () => `Bearer ${await token(key, {}, { exp: Math.floor(Date.now() / 1000) - 60 })}`],
    ['not valid before a minute from now', async () => `Bearer ${await token(key, {}, { nbf: Math.floor(Date.now() / 1000) + 60 })}`],
    ['another issuer', async () => `Bearer ${await token(key, {}, { iss: 'https://evil.example.com/' })}`],
    ['another audience', async () => `Bearer ${await token(key, {}, { aud: 'someone-else' })}`],
    ['no subject', async () => `Bearer ${await token(key, {}, { sub: null })}`],
    ['a signature by another key under the same kid', async () => `Bearer ${await token({ ...(await signingKey('key-1')) })}`],
    ['alg none', async () => `Bearer ${b64({ alg: 'none', typ: 'JWT' })}.${b64({ sub: 'admin', iss: ISSUER, aud: AUDIENCE, exp: 9999999999 })}.`],
    [
      'HS256 signed with the public key (algorithm confusion)',
      async () => {
        const secret = new TextEncoder().encode(JSON.stringify(key.jwk));
        return `Bearer ${await new SignJWT({}).setProtectedHeader({ alg: 'HS256', kid: 'key-1' }).setSubject('admin').setIssuer(ISSUER).setAudience(AUDIENCE).setExpirationTime('5m').sign(secret)}`;
      },
    ],
    ['a kid nobody published', async () => `Bearer ${await token(await signingKey('key-unknown'))}`],
    ['garbage', async () => 'Bearer not.a.jwt'],
  ])('refuses %s with 401 and never calls OpenAI', async (_name, make) => {
    expectUnauthorized(await withBearer(await make()));
    expect(openai.fake.mintRequests).toHaveLength(0);
    expect(t.logs.find('request refused').at(-1)).toMatchObject({ refusal: 'auth', status: 401 });
  });

  it('accepts a token expired less than the 30 s tolerance ago (clock skew)', async () => {
    expect((await withBearer(`Bearer ${await token(key, {}, { exp: Math.floor(Date.now() / 1000) - 10 })}`)).statusCode).toBe(200);
  });

  it('follows a key rotation: a token under a new kid makes it fetch the JWKS again', async () => {
    expect((await withBearer(`Bearer ${await token(key)}`)).statusCode).toBe(200);
    const fetchesBefore = jwks.fetches;
    const next = await signingKey('key-2', 'ES256');
    jwks.keys = [next.jwk];
    expect((await withBearer(`Bearer ${await token(next)}`)).statusCode).toBe(200);
    expect(jwks.fetches).toBe(fetchesBefore + 1);
    // and a cached key serves further requests without fetching
    expect((await withBearer(`Bearer ${await token(next, {}, { sub: 'user_43' })}`)).statusCode).toBe(200);
    expect(jwks.fetches).toBe(fetchesBefore + 1);
  });

  it('limits key on the user, not the address: one user on two addresses shares, two users on one address do not', async () => {
    const alice = `Bearer ${await token(key, {}, { sub: 'alice' })}`;
    const bob = `Bearer ${await token(key, {}, { sub: 'bob' })}`;
    expect((await withBearer(alice, '10.2.0.1')).statusCode).toBe(200);
    expect((await withBearer(alice, '10.2.0.2')).statusCode).toBe(200);
    expectEnvelope(await withBearer(alice, '10.2.0.3'), 429);
    expect((await withBearer(bob, '10.2.0.1')).statusCode).toBe(200);
    expect((await withBearer(bob, '10.2.0.1')).statusCode).toBe(200);
  });

  it('answers 503 (not 401) while the JWKS cannot be fetched: the token may be fine', async () => {
    await jwks.close();
    const response = await withBearer(`Bearer ${await token(key)}`);
    const envelope = expectEnvelope(response, 503);
    expect(envelope.error.retry_after).toBeGreaterThan(0);
    expect(openai.fake.mintRequests).toHaveLength(0);
    jwks = await JwksServer.start(); // for afterEach
  });

  it('CORS lets a page send Authorization', async () => {
    const preflight = await t.app.inject({
      method: 'OPTIONS',
      url: '/v1/realtime/token',
      headers: { origin: SITE_ORIGIN, 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' },
    });
    expect(preflight.statusCode).toBe(204);
    expect(String(preflight.headers['access-control-allow-headers']).toLowerCase()).toContain('authorization');
  });
});

describe('caller authentication with a shared secret (AUTH_JWT_SECRET, HS256)', () => {
  const SECRET = 'a-shared-secret-of-at-least-32-bytes!!';
  const sign = (secret: string, alg = 'HS256') =>
    new SignJWT({}).setProtectedHeader({ alg }).setSubject('user_7').setExpirationTime('5m').sign(new TextEncoder().encode(secret));

  it('mints for a token signed with the secret and refuses any other', async () => {
    const t = await openai.app({ AUTH_JWT_SECRET: SECRET });
    const mint = (jwt: string) => t.mint({}, { authorization: `Bearer ${jwt}` });
    expect((await mint(await sign(SECRET))).statusCode).toBe(200);
    expectEnvelope(await mint(await sign(`${SECRET}-not`)), 401);
    // HS512 with the right secret is still an algorithm the service did not choose
    expectEnvelope(await mint(await sign(SECRET, 'HS512')), 401);
    expect(openai.fake.mintRequests).toHaveLength(1);
    expect(t.logs.raw).not.toContain(SECRET);
  });

  it('remembers a verified token only until it expires', async () => {
    const t = await openai.app({ AUTH_JWT_SECRET: SECRET });
    vi.useFakeTimers({ toFake: ['Date'] });
    try {
      const jwt = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('user_9').setExpirationTime('10s').sign(new TextEncoder().encode(SECRET));
      expect((await t.mint({}, { authorization: `Bearer ${jwt}` })).statusCode).toBe(200);
      vi.setSystemTime(Date.now() + 5_000);
      expect((await t.mint({}, { authorization: `Bearer ${jwt}` })).statusCode).toBe(200);
      // 45 s later: past exp and the 30 s tolerance, inside the cache's minute: refused all the same
      vi.setSystemTime(Date.now() + 45_000);
      expectEnvelope(await t.mint({}, { authorization: `Bearer ${jwt}` }), 401);
    } finally {
      vi.useRealTimers();
    }
  });

  it('refuses a token that never expires; takes the scheme in any case (RFC 7235)', async () => {
    const t = await openai.app({ AUTH_JWT_SECRET: SECRET });
    const forever = await new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject('user_8').sign(new TextEncoder().encode(SECRET));
    expectEnvelope(await t.mint({}, { authorization: `Bearer ${forever}` }), 401);
    expect((await t.mint({}, { authorization: `bearer ${await sign(SECRET)}` })).statusCode).toBe(200);
  });
});
