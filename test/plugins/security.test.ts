import { beforeEach, describe, expect, it } from 'vitest';
import { expectEnvelope, EXTENSION_ORIGIN, SITE_ORIGIN, useFakeOpenAI, type TestApp } from '../support/app.js';

const openai = useFakeOpenAI();
let t: TestApp;

beforeEach(async () => {
  t = await openai.app();
});


const mintFrom = (headers: Record<string, string>) =>
  t.app.inject({ method: 'POST', url: '/v1/realtime/token', headers: { 'content-type': 'application/json', ...headers }, payload: '{}' });

describe('origin guard', () => {
  it('lets the allowed site and the extension through', async () => {
    expect((await mintFrom({ origin: SITE_ORIGIN })).statusCode).toBe(200);
    expect((await mintFrom({ origin: EXTENSION_ORIGIN })).statusCode).toBe(200);
    expect((await mintFrom({ origin: SITE_ORIGIN, referer: `${SITE_ORIGIN}/nba/game/_/gameId/401` })).statusCode).toBe(200);
  });

  it.each([
    ['a foreign origin', { origin: 'https://evil.example' }],
    ['a missing origin', {}],
    ['a prefix trick', { origin: `${SITE_ORIGIN}.evil.example` }],
    ['a suffix trick', { origin: 'https://evil-www.espn.com' }],
    ['another scheme', { origin: 'http://www.espn.com' }],
    ['an explicit port', { origin: `${SITE_ORIGIN}:443` }],
    ['upper case', { origin: SITE_ORIGIN.toUpperCase() }],
    ['a trailing slash', { origin: `${SITE_ORIGIN}/` }],
    ['the opaque null origin', { origin: 'null' }],
    ['two origins in one header', { origin: `${SITE_ORIGIN}, https://evil.example` }],
    ['another extension', { origin: 'chrome-extension://zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz' }],
    ['a foreign referer', { origin: SITE_ORIGIN, referer: 'https://evil.example/page' }],
    ['a referer that only starts like the site', { origin: SITE_ORIGIN, referer: `${SITE_ORIGIN}.evil.example/` }],
    ['a garbage referer', { origin: SITE_ORIGIN, referer: 'not a url' }],
  ])('refuses %s with 403 and never calls OpenAI', async (_name, headers) => {
    expectEnvelope(await mintFrom(headers), 403);
    expect(openai.fake.mintRequests).toHaveLength(0);
  });

  it('logs one refusal line with the reason and the origin', async () => {
    await mintFrom({ origin: 'https://evil.example' });
    const refusals = t.logs.find('request refused');
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatchObject({ refusal: 'origin', status: 403, origin: 'https://evil.example' });
  });

  it('ALLOW_MISSING_ORIGIN lets a request without Origin through, but not a foreign Referer', async () => {
    const lenient = await openai.app({ ALLOW_MISSING_ORIGIN: 'true' });
    const noOrigin = await lenient.app.inject({ method: 'POST', url: '/v1/realtime/token' });
    expect(noOrigin.statusCode).toBe(200);
    const foreign = await lenient.app.inject({ method: 'POST', url: '/v1/realtime/token', headers: { referer: 'https://evil.example/' } });
    expectEnvelope(foreign, 403);
    expectEnvelope(await lenient.app.inject({ method: 'POST', url: '/v1/realtime/token', headers: { origin: 'https://evil.example' } }), 403);
  });
});

describe('CORS', () => {
  const preflight = (origin: string) =>
    t.app.inject({
      method: 'OPTIONS',
      url: '/v1/realtime/token',
      headers: { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' },
    });

  it('answers the preflight of an allowed origin', async () => {
    const response = await preflight(SITE_ORIGIN);
    expect(response.statusCode).toBe(204);
    expect(response.headers['access-control-allow-origin']).toBe(SITE_ORIGIN);
    expect(String(response.headers['access-control-allow-methods'])).toContain('POST');
    expect(String(response.headers['access-control-allow-headers']).toLowerCase()).toContain('content-type');
    expect(String(response.headers.vary)).toContain('Origin');
  });

  it('gives a foreign origin no CORS headers', async () => {
    const response = await preflight('https://evil.example');
    expect(response.headers['access-control-allow-origin']).toBeUndefined();
    const post = await mintFrom({ origin: 'https://evil.example' });
    expect(post.headers['access-control-allow-origin']).toBeUndefined();
    expect(String(post.headers.vary)).toContain('Origin');
  });

  it('puts CORS headers on answers, errors included, so the extension can read them', async () => {
    const ok = await mintFrom({ origin: EXTENSION_ORIGIN });
    expect(ok.headers['access-control-allow-origin']).toBe(EXTENSION_ORIGIN);
    expect(String(ok.headers['access-control-expose-headers'])).toContain('Retry-After');
    const invalid = await t.app.inject({
      method: 'POST',
      url: '/v1/realtime/token',
      headers: { origin: SITE_ORIGIN, 'content-type': 'application/json' },
      payload: '{"voice":1}',
    });
    expect(invalid.statusCode).toBe(422);
    expect(invalid.headers['access-control-allow-origin']).toBe(SITE_ORIGIN);
  });

  it('uses CORS_ORIGINS when it differs from ALLOWED_ORIGINS', async () => {
    const split = await openai.app({ CORS_ORIGINS: 'http://localhost:5173' });
    const site = await split.app.inject({ method: 'OPTIONS', url: '/v1/realtime/token', headers: { origin: SITE_ORIGIN, 'access-control-request-method': 'POST' } });
    expect(site.headers['access-control-allow-origin']).toBeUndefined();
    const local = await split.app.inject({ method: 'OPTIONS', url: '/v1/realtime/token', headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'POST' } });
    expect(local.headers['access-control-allow-origin']).toBe('http://localhost:5173');
  });
});

describe('security headers and request ids', () => {
  it('sets helmet headers on API answers', async () => {
    const response = await t.app.inject({ method: 'GET', url: '/healthz' });
    expect(response.headers['x-content-type-options']).toBe('nosniff');
    expect(response.headers['x-frame-options']).toBeDefined();
    expect(response.headers['content-security-policy']).toContain("default-src 'self'");
  });

  it('keeps a well-formed X-Request-ID and replaces anything else', async () => {
    const kept = await t.app.inject({ method: 'GET', url: '/healthz', headers: { 'x-request-id': 'ext-1234_abc.5' } });
    expect(kept.headers['x-request-id']).toBe('ext-1234_abc.5');
    for (const bad of ['has space', 'a'.repeat(129), '<script>', 'semi;colon']) {
      const replaced = await t.app.inject({ method: 'GET', url: '/nope', headers: { 'x-request-id': bad } });
      expect(replaced.headers['x-request-id']).not.toBe(bad);
      expect(replaced.headers['x-request-id']).toMatch(/^[0-9a-f-]{36}$/);
      expectEnvelope(replaced, 404);
    }
  });
});
