import { randomUUID } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { expectEnvelope, SITE_ORIGIN, testEnv, useFakeOpenAI, type TestApp } from '../support/app.js';
import { JwksServer, signedToken, signingKey, type Claims, type SigningKey } from '../support/jwks-server.js';

const openai = useFakeOpenAI();

const ISSUER = 'https://auth.example.com/';
const AUDIENCE = 'parker-extension';
const HOUR = 3600;
const now = () => Math.floor(Date.now() / 1000);

const mintWith = (t: TestApp, jwt: string) =>
  t.app.inject({ method: 'POST', url: '/v1/realtime/token', headers: { origin: SITE_ORIGIN, authorization: `Bearer ${jwt}` } });

describe('AUTH_JWKS_URL needs AUTH_ISSUER (issue 16: a shared JWKS such as Firebase’s lets any project’s users in)', () => {
  it('is a config error naming AUTH_ISSUER', () => {
    const env = testEnv('http://127.0.0.1:9/v1', { AUTH_JWKS_URL: 'https://www.googleapis.com/service_accounts/v1/jwk/securetoken@system.gserviceaccount.com' });
    expect(() => loadConfig(env)).toThrow(ConfigError);
    expect(() => loadConfig(env)).toThrow(/AUTH_ISSUER/);
    expect(loadConfig({ ...env, AUTH_ISSUER: 'https://securetoken.google.com/my-project' }).authIssuer).toBe('https://securetoken.google.com/my-project');
  });

  it('boots with a warning when AUTH_AUDIENCE is not set', async () => {
    const jwks = await JwksServer.start();
    try {
      const t = await openai.app({ AUTH_JWKS_URL: jwks.url, AUTH_ISSUER: ISSUER });
      const warning = t.logs.lines.find((line) => line.level === 'warn' && String(line.msg).includes('AUTH_AUDIENCE'));
      expect(warning).toBeDefined();
      const withAudience = await openai.app({ AUTH_JWKS_URL: jwks.url, AUTH_ISSUER: ISSUER, AUTH_AUDIENCE: AUDIENCE });
      expect(withAudience.logs.raw).not.toContain('AUTH_AUDIENCE');
    } finally {
      await jwks.close();
    }
  });
});

describe('the JWKS fetch is bounded', () => {
  let jwks: JwksServer;
  let key: SigningKey;

  beforeEach(async () => {
    jwks = await JwksServer.start();
    key = await signingKey('key-1');
    jwks.keys = [key.jwk];
  });
  afterEach(async () => {
    await jwks.close();
  });

  const claims = (): Claims => ({ sub: 'user_1', iss: ISSUER, aud: AUDIENCE, iat: now(), exp: now() + 300 });

  it('backs off after a failed fetch: 300 tokens with random kids while the JWKS answers 500 make at most 2 fetches', async () => {
    const t = await openai.app({ AUTH_JWKS_URL: jwks.url, AUTH_ISSUER: ISSUER, AUTH_AUDIENCE: AUDIENCE, RATE_LIMIT_PER_MINUTE: '1000' });
    jwks.answer = { kind: 'status', status: 500 };
    const statuses: number[] = [];
    for (let batch = 0; batch < 10; batch++) {
      const tokens = await Promise.all(Array.from({ length: 30 }, async () => signedToken({ ...key, kid: randomUUID() }, claims())));
      const answers = await Promise.all(tokens.map((jwt) => mintWith(t, jwt)));
      statuses.push(...answers.map((answer) => answer.statusCode));
    }
    expect(new Set(statuses)).toEqual(new Set([503]));
    expect(jwks.fetches).toBeLessThanOrEqual(2);
    expect(openai.fake.mintRequests).toHaveLength(0);
  });

  it('fetches again once the backoff has passed, and then verifies', async () => {
    const t = await openai.app(
      { AUTH_JWKS_URL: jwks.url, AUTH_ISSUER: ISSUER, AUTH_AUDIENCE: AUDIENCE },
      { jwt: { jwksFailureBackoffMs: 100 } },
    );
    jwks.answer = { kind: 'status', status: 500 };
    expectEnvelope(await mintWith(t, await signedToken(key, claims())), 503);
    jwks.answer = { kind: 'keys' };
    // Inside the backoff: no fetch, still 503.
    expectEnvelope(await mintWith(t, await signedToken(key, claims())), 503);
    expect(jwks.fetches).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect((await mintWith(t, await signedToken(key, claims()))).statusCode).toBe(200);
    expect(jwks.fetches).toBe(2);
  });

  it('refuses a 60 MB JWKS without reading it (503), and keeps working with a sane one', async () => {
    const t = await openai.app(
      { AUTH_JWKS_URL: jwks.url, AUTH_ISSUER: ISSUER, AUTH_AUDIENCE: AUDIENCE },
      { jwt: { jwksFailureBackoffMs: 50 } },
    );
    jwks.answer = { kind: 'huge', bytes: 60 * 1024 * 1024 };
    const rssBefore = process.memoryUsage().rss;
    expectEnvelope(await mintWith(t, await signedToken(key, claims())), 503);
    const rssGrowthMb = (process.memoryUsage().rss - rssBefore) / 2 ** 20;
    console.info(`60 MB JWKS: ${(jwks.lastBytesSent / 2 ** 20).toFixed(1)} MB sent before the service hung up, RSS +${rssGrowthMb.toFixed(1)} MB`);
    // What the socket buffers could take before the service stopped reading, far from 60 MB.
    expect(jwks.lastBytesSent).toBeLessThan(16 * 2 ** 20);
    expect(t.logs.find('request refused').at(-1)).toMatchObject({ refusal: 'auth', auth_failure: 'jwks_unavailable' });
    jwks.answer = { kind: 'keys' };
    await new Promise((resolve) => setTimeout(resolve, 150));
    expect((await mintWith(t, await signedToken(key, claims()))).statusCode).toBe(200);
  });
});

describe('token lifetime: a token that claims to live for years is refused (issue 16)', () => {
  const SECRET = new TextEncoder().encode('a-shared-secret-of-at-least-32-bytes!!');
  const cases: [string, number, () => Claims][] = [
    ['exp 50 years away', 401, () => ({ sub: 'u', iat: now(), exp: now() + 50 * 365 * 24 * HOUR })],
    ['exp 25 h after iat', 401, () => ({ sub: 'u', iat: now(), exp: now() + 25 * HOUR })],
    ['no iat and exp 25 h away', 401, () => ({ sub: 'u', exp: now() + 25 * HOUR })],
    ['iat an hour in the future', 401, () => ({ sub: 'u', iat: now() + HOUR, exp: now() + 2 * HOUR })],
    ['exp 23 h after iat (a long session, still accepted)', 200, () => ({ sub: 'u', iat: now(), exp: now() + 23 * HOUR })],
    ['iat 20 s ahead (clock skew inside the 30 s tolerance)', 200, () => ({ sub: 'u', iat: now() + 20, exp: now() + 300 })],
    ['no iat, exp in 5 minutes', 200, () => ({ sub: 'u', exp: now() + 300 })],
  ];

  it.each(cases)('%s: %i', async (_name, status, claims) => {
    const t = await openai.app({ AUTH_JWT_SECRET: new TextDecoder().decode(SECRET) });
    const response = await mintWith(t, await signedToken(SECRET, claims()));
    if (status === 200) {
      expect(response.statusCode).toBe(200);
      return;
    }
    expectEnvelope(response, 401);
    expect(response.headers['www-authenticate']).toBe('Bearer error="invalid_token"');
    expect(openai.fake.mintRequests).toHaveLength(0);
  });
});
