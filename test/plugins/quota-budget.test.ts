import { describe, expect, it } from 'vitest';
import { MintBudget } from '../../src/usage/mint-budget.js';
import { expectEnvelope, SITE_ORIGIN, useFakeOpenAI, type TestApp } from '../support/app.js';
import { turn } from '../support/wait.js';

const openai = useFakeOpenAI();

const from = (t: TestApp, ip: string) =>
  t.app.inject({ method: 'POST', url: '/v1/realtime/token', remoteAddress: ip, headers: { origin: SITE_ORIGIN } });

describe('daily quota per client (MINTS_PER_CLIENT_PER_DAY)', () => {
  it('refuses the client past its quota for the day with 429 reason quota, others unaffected', async () => {
    const t = await openai.app({ MINTS_PER_CLIENT_PER_DAY: '3', RATE_LIMIT_PER_MINUTE: '100' });
    for (let i = 0; i < 3; i++) expect((await from(t, '10.3.0.1')).statusCode).toBe(200);
    const refused = await from(t, '10.3.0.1');
    const envelope = expectEnvelope(refused, 429);
    expect(envelope.error.message).toContain('Daily quota of 3');
    // the window is a day: the wait is hours, not a minute
    expect(envelope.error.retry_after).toBeGreaterThan(86_000);
    expect(refused.headers['retry-after']).toBe(String(envelope.error.retry_after));
    expect(t.logs.find('request refused').at(-1)).toMatchObject({ refusal: 'quota', status: 429 });
    expect((await from(t, '10.3.0.2')).statusCode).toBe(200);
    expect(openai.fake.mintRequests).toHaveLength(4);
  });

  it('0 turns the daily quota off', async () => {
    const t = await openai.app({ MINTS_PER_CLIENT_PER_DAY: '0', RATE_LIMIT_PER_MINUTE: '1000' });
    for (let i = 0; i < 120; i++) expect((await from(t, '10.3.0.3')).statusCode).toBe(200);
    expect((await from(t, '10.3.0.3')).headers['ratelimit-policy']).toBe('"minute";q=1000;w=60');
  });
});

describe('IETF RateLimit fields', () => {
  it('announce every client policy and what is left of each', async () => {
    const t = await openai.app({ RATE_LIMIT_BURST: '5', RATE_LIMIT_PER_MINUTE: '10', MINTS_PER_CLIENT_PER_DAY: '50' });
    const first = await from(t, '10.4.0.1');
    expect(first.headers['ratelimit-policy']).toBe('"second";q=5;w=1, "minute";q=10;w=60, "day";q=50;w=86400');
    expect(first.headers.ratelimit).toMatch(/^"second";r=4;t=1, "minute";r=9;t=60, "day";r=49;t=86400$/);
    expect(first.headers['x-ratelimit-remaining']).toBe('9');
    for (let i = 0; i < 4; i++) await from(t, '10.4.0.1');
    const limited = await from(t, '10.4.0.1');
    expectEnvelope(limited, 429);
    expect(limited.headers.ratelimit).toBe('"second";r=0;t=1');
    expect(limited.headers['ratelimit-policy']).toBe(first.headers['ratelimit-policy']);
  });

  it('are readable by a page (exposed through CORS)', async () => {
    const t = await openai.app();
    const response = await from(t, '10.4.0.2');
    const exposed = String(response.headers['access-control-expose-headers']).toLowerCase().split(/,\s*/);
    expect(exposed).toEqual(expect.arrayContaining(['ratelimit', 'ratelimit-policy', 'x-ratelimit-remaining']));
  });
});

describe('global budget (GLOBAL_MINTS_PER_MINUTE / GLOBAL_MINTS_PER_DAY)', () => {
  it('caps the whole service: many clients together get the budget, then 503 reason budget with retry_after', async () => {
    const t = await openai.app({ GLOBAL_MINTS_PER_MINUTE: '5', GLOBAL_MINTS_PER_DAY: '1000' });
    for (let i = 0; i < 5; i++) expect((await from(t, `10.5.0.${i + 1}`)).statusCode).toBe(200);
    const refused = await from(t, '10.5.0.99');
    const envelope = expectEnvelope(refused, 503);
    expect(envelope.error.retry_after).toBeGreaterThan(0);
    expect(envelope.error.retry_after).toBeLessThanOrEqual(60);
    expect(refused.headers['retry-after']).toBe(String(envelope.error.retry_after));
    expect(t.logs.find('request refused').at(-1)).toMatchObject({ refusal: 'budget', status: 503, budget: 'minute' });
    expect(openai.fake.mintRequests).toHaveLength(5);
  });

  it('0 means off, as unset does (and as MINTS_PER_CLIENT_PER_DAY=0 does): no budget counts or refuses', async () => {
    const t = await openai.app({ GLOBAL_MINTS_PER_MINUTE: '0', GLOBAL_MINTS_PER_DAY: '0' });
    for (let i = 0; i < 3; i++) expect((await from(t, `10.8.0.${i + 1}`)).statusCode).toBe(200);
    const text = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(text).not.toMatch(/realtime_budget_limit\{/);
    expect(t.logs.lines.some((line) => String(line.msg).startsWith('no GLOBAL_MINTS_PER_DAY'))).toBe(true);
  });

  it('warns once when a window is 80 % used', async () => {
    const t = await openai.app({ GLOBAL_MINTS_PER_MINUTE: '10' });
    for (let i = 0; i < 10; i++) await from(t, `10.6.0.${i + 1}`);
    const warnings = t.logs.find('global minute budget 80 % used');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatchObject({ level: 'warn', budget_used: 8, budget_limit: 10 });
  });

  it('warns at boot when no daily budget bounds the service, and not when one does', async () => {
    const open = await openai.app();
    expect(open.logs.lines.some((line) => String(line.msg).startsWith('no GLOBAL_MINTS_PER_DAY'))).toBe(true);
    const bounded = await openai.app({ GLOBAL_MINTS_PER_DAY: '5000' });
    expect(bounded.logs.lines.some((line) => String(line.msg).startsWith('no GLOBAL_MINTS_PER_DAY'))).toBe(false);
  });

  it('/metrics shows each budget and each refusal reason', async () => {
    const t = await openai.app({ GLOBAL_MINTS_PER_MINUTE: '2', GLOBAL_MINTS_PER_DAY: '100', MINTS_PER_CLIENT_PER_DAY: '1' });
    await from(t, '10.7.0.1');
    expectEnvelope(await from(t, '10.7.0.1'), 429);
    await from(t, '10.7.0.2');
    expectEnvelope(await from(t, '10.7.0.3'), 503);
    const text = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(text).toContain('realtime_budget_limit{window="minute"} 2');
    expect(text).toContain('realtime_budget_limit{window="day"} 100');
    expect(text).toMatch(/realtime_budget_used\{window="minute"\} 3/);
    expect(text).toContain('realtime_token_refusals_total{reason="quota"} 1');
    expect(text).toContain('realtime_token_refusals_total{reason="budget"} 1');
    expect(text).toMatch(/log_lines_dropped_total 0/);
  });

  it('tells the warm pool how long to wait once spent (no refills while spent)', async () => {
    const budget = new MintBudget({ globalMintsPerMinute: 3, globalMintsPerDay: undefined });
    expect(budget.waitMs()).toBe(0);
    const [minute] = budget.windows;
    if (!minute) throw new Error('no minute window');
    minute.used = 3;
    minute.resetAt = Date.now() + 20_000;
    expect(budget.waitMs()).toBeGreaterThan(19_000);
    expect(budget.waitMs()).toBeLessThanOrEqual(20_000);
  });
});

describe('the daily quota cannot be evicted by other clients\' traffic', () => {
  // Before the usage ledger, the quota's day key sat in the limiter's one 50,000-entry LRU with every
  // client's minute key: 26,000 requests from other addresses evicted it and the spent client minted again.
  const viaProxy = (t: TestApp, ip: string, payload?: string) =>
    t.app.inject({
      method: 'POST',
      url: '/v1/realtime/token',
      headers: { origin: SITE_ORIGIN, 'x-forwarded-for': ip, ...(payload === undefined ? {} : { 'content-type': 'application/json' }) },
      payload,
    });

  it('a spent client is still refused after 26,000 requests from other addresses', async () => {
    // warn: the 26,000 refusal and access lines would only slow the test down
    const t = await openai.app({ TRUST_PROXY: '1', MINTS_PER_CLIENT_PER_DAY: '2', RATE_LIMIT_PER_MINUTE: '100', LOG_LEVEL: 'warn' });
    for (let i = 0; i < 2; i++) expect((await viaProxy(t, '203.0.113.50')).statusCode).toBe(200);
    expectEnvelope(await viaProxy(t, '203.0.113.50'), 429);
    for (let i = 0; i < 26_000; i += 50) {
      const batch = Array.from({ length: 50 }, (_, j) => viaProxy(t, `10.${((i + j) >> 16) & 255}.${((i + j) >> 8) & 255}.${(i + j) & 255}`, '{"model": 42}'));
      for (const response of await Promise.all(batch)) {
        if (response.statusCode !== 422) throw new Error(`request near ${i}: ${response.statusCode} ${response.body}`);
      }
      await turn();
    }
    const refused = expectEnvelope(await viaProxy(t, '203.0.113.50'), 429);
    expect(refused.error.message).toContain('Daily quota of 2');
    expect(openai.fake.mintRequests).toHaveLength(2);
  }, 120_000);
});
