import type { LightMyRequestResponse } from 'fastify';
import { describe, expect, it } from 'vitest';
import { expectEnvelope, SITE_ORIGIN, useFakeOpenAI, type TestApp } from '../support/app.js';
import { endCall, postSdp } from '../support/calls.js';

const openai = useFakeOpenAI();

const TOKEN = 'admin-token-0123456789-abcdefghij';
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
const get = (t: TestApp, url: string, headers: Record<string, string> = {}) => t.app.inject({ method: 'GET', url, headers });

function expectNoCors(response: LightMyRequestResponse) {
  for (const name of Object.keys(response.headers)) expect(name.toLowerCase()).not.toMatch(/^access-control-/);
}

interface Usage {
  window_seconds: number;
  store: string;
  global: { mints: number; spend_usd: number; mints_limit: number | null; spend_limit_usd: number | null };
  clients: { client: string; mints: number; spend_usd: number; active_calls: number; resets_at: string }[];
  hourly: { hour: string; mints: number; spend_usd: number; refusals: Record<string, number> }[];
}

describe('/admin and /admin/usage', () => {
  it('without ADMIN_TOKEN both are 404 in the envelope, whatever the request carries', async () => {
    const t = await openai.app();
    for (const url of ['/admin', '/admin/usage', '/admin/assets/admin.js']) {
      expectEnvelope(await get(t, url), 404);
      expectEnvelope(await get(t, url, { authorization: `Bearer ${TOKEN}` }), 404);
    }
  });

  it('with ADMIN_TOKEN: 401 envelope and a Basic challenge without the token or with a wrong one', async () => {
    const t = await openai.app({ ADMIN_TOKEN: TOKEN });
    const wrong: Record<string, string>[] = [
      {},
      { authorization: 'Bearer nope' },
      { authorization: `Bearer ${TOKEN}x` },
      { authorization: `Bearer ${TOKEN.slice(0, -1)}` },
      { authorization: basic('operator', 'nope') },
      // the token as the user name, no password: not the password
      { authorization: basic(TOKEN, '') },
      { authorization: `Basic ${Buffer.from(TOKEN).toString('base64')}` },
      { authorization: `Token ${TOKEN}` },
      { authorization: TOKEN },
      { authorization: 'Basic !!!not-base64!!!' },
    ];
    for (const url of ['/admin', '/admin/usage', '/admin/assets/admin.js']) {
      for (const headers of wrong) {
        const response = await get(t, url, headers);
        expectEnvelope(response, 401);
        expect(response.headers['www-authenticate']).toBe('Basic realm="admin"');
        expect(response.headers['cache-control']).toBe('no-store');
      }
    }
    expect(t.logs.find('request refused').at(-1)).toMatchObject({ refusal: 'operator_auth', status: 401 });
    expect(t.logs.raw).not.toContain(TOKEN.slice(0, 20));
  });

  it('takes the token as a bearer, or as the Basic password with any user name', async () => {
    const t = await openai.app({ ADMIN_TOKEN: TOKEN });
    for (const authorization of [`Bearer ${TOKEN}`, `bearer ${TOKEN}`, basic('operator', TOKEN), basic('', TOKEN)]) {
      const usage = await get(t, '/admin/usage', { authorization });
      expect(usage.statusCode, authorization).toBe(200);
      expect(usage.headers['content-type']).toMatch(/^application\/json/);
      expect(usage.headers['cache-control']).toBe('no-store');
    }
    const page = await get(t, '/admin', { authorization: basic('operator', TOKEN) });
    expect(page.statusCode).toBe(200);
    expect(page.headers['content-type']).toMatch(/^text\/html/);
    // helmet's CSP holds: the page's scripts are files of this origin, none inline
    expect(page.headers['content-security-policy']).toContain("script-src 'self'");
    expect(page.body).toContain('<script src="/admin/assets/admin.js" type="module"></script>');
    expect(page.body).not.toMatch(/<script>(?!<\/script>)/);
    for (const [asset, type] of [
      ['admin.js', /^text\/javascript/],
      ['uPlot.iife.min.js', /^text\/javascript/],
      ['uPlot.min.css', /^text\/css/],
    ] as const) {
      const response = await get(t, `/admin/assets/${asset}`, { authorization: `Bearer ${TOKEN}` });
      expect(response.statusCode, asset).toBe(200);
      expect(response.headers['content-type']).toMatch(type);
      expect(response.body.length).toBeGreaterThan(1000);
    }
    expect((await get(t, '/admin/assets/uPlot.iife.min.js', { authorization: `Bearer ${TOKEN}` })).body).toContain('uPlot');
    expectEnvelope(await get(t, '/admin/assets/..%2fpackage.json', { authorization: `Bearer ${TOKEN}` }), 404);
  });

  it('never sends CORS headers, even to an origin that gets them on /v1 (the control)', async () => {
    const t = await openai.app({ ADMIN_TOKEN: TOKEN });
    const preflight = (url: string) =>
      t.app.inject({
        method: 'OPTIONS',
        url,
        headers: { origin: SITE_ORIGIN, 'access-control-request-method': 'GET', 'access-control-request-headers': 'authorization' },
      });
    // the control: the same origin and request get CORS headers on the token route
    expect((await preflight('/v1/realtime/token')).headers['access-control-allow-origin']).toBe(SITE_ORIGIN);
    for (const url of ['/admin', '/admin/usage']) {
      expectNoCors(await preflight(url));
      const response = await get(t, url, { origin: SITE_ORIGIN, authorization: `Bearer ${TOKEN}` });
      expect(response.statusCode).toBe(200);
      expectNoCors(response);
      expectNoCors(await get(t, url, { origin: SITE_ORIGIN }));
    }
  });

  it('/admin/usage counts each client\'s mints, the global window and the refusals of the hour', async () => {
    const t = await openai.app({ ADMIN_TOKEN: TOKEN, TRUST_PROXY: '1', GLOBAL_MINTS_PER_DAY: '500' });
    const from = (ip: string) => ({ 'x-forwarded-for': ip });
    for (let i = 0; i < 3; i++) expect((await t.mint({}, from('203.0.113.7'))).statusCode).toBe(200);
    expect((await t.mint({}, from('198.51.100.20'))).statusCode).toBe(200);
    // a refusal: no Origin
    const refused = await t.app.inject({ method: 'POST', url: '/v1/realtime/token', headers: from('198.51.100.20') });
    expect(refused.statusCode).toBe(403);

    const usage = (await get(t, '/admin/usage', { authorization: `Bearer ${TOKEN}` })).json<Usage>();
    expect(usage.window_seconds).toBe(86400);
    expect(usage.global).toMatchObject({ mints: 4, mints_limit: 500 });
    expect(usage.clients.map((c) => [c.client, c.mints])).toEqual([
      ['ip:203.0.113.7', 3],
      ['ip:198.51.100.20', 1],
    ]);
    for (const client of usage.clients) expect(Date.parse(client.resets_at)).toBeGreaterThan(Date.now());
    expect(usage.hourly).toHaveLength(24);
    const thisHour = usage.hourly.at(-1);
    expect(thisHour?.mints).toBe(4);
    expect(thisHour?.refusals).toMatchObject({ origin: 1 });
    expect(Date.parse(thisHour?.hour ?? '')).toBeLessThanOrEqual(Date.now());
    // no client secret, no key in the report
    const raw = JSON.stringify(usage);
    expect(raw).not.toContain('ek_');
    expect(raw).not.toContain(t.config.openaiApiKey);
  });

  it('/admin/usage shows each client\'s relayed calls while they run, and none once ended', async () => {
    const t = await openai.app({ ADMIN_TOKEN: TOKEN });
    const usage = async () => (await get(t, '/admin/usage', { authorization: `Bearer ${TOKEN}` })).json<Usage>();
    const first = await postSdp(t.app, undefined, { remoteAddress: '203.0.113.9' });
    const second = await postSdp(t.app, undefined, { remoteAddress: '203.0.113.9' });
    expect([first.statusCode, second.statusCode]).toEqual([201, 201]);
    expect((await usage()).clients.find((c) => c.client === 'ip:203.0.113.9')).toMatchObject({ mints: 2, active_calls: 2 });
    expect((await endCall(t.app, String(first.headers.location), '203.0.113.9')).statusCode).toBe(204);
    expect((await usage()).clients.find((c) => c.client === 'ip:203.0.113.9')?.active_calls).toBe(1);
  });
});
