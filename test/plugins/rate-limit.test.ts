import { describe, expect, it } from 'vitest';
import { turn } from '../support/wait.js';
import { expectEnvelope, SITE_ORIGIN, useFakeOpenAI, type TestApp } from '../support/app.js';

const openai = useFakeOpenAI();
let t: TestApp;


const from = (ip: string, xff?: string) =>
  t.app.inject({
    method: 'POST',
    url: '/v1/realtime/token',
    remoteAddress: ip,
    headers: { origin: SITE_ORIGIN, 'content-type': 'application/json', ...(xff ? { 'x-forwarded-for': xff } : {}) },
    payload: '{}',
  });

describe('rate limit on the token route', () => {
  it('allows RATE_LIMIT_PER_MINUTE per client; the 11th is a 429 in the envelope, CORS intact', async () => {
    t = await openai.app();
    for (let i = 0; i < 10; i++) {
      const ok = await from('10.0.0.1');
      expect(ok.statusCode).toBe(200);
      expect(ok.headers['x-ratelimit-remaining']).toBe(String(9 - i));
    }
    const limited = await from('10.0.0.1');
    const envelope = expectEnvelope(limited, 429);
    expect(envelope.error.retry_after).toBeGreaterThan(0);
    expect(envelope.error.retry_after).toBeLessThanOrEqual(60);
    expect(limited.headers['retry-after']).toBe(String(envelope.error.retry_after));
    const details = envelope.error.details as { limit: number; remaining: number; reset_time: string };
    expect(details.limit).toBe(10);
    expect(details.remaining).toBe(0);
    expect(new Date(details.reset_time).toISOString()).toBe(details.reset_time);
    expect(Date.parse(details.reset_time)).toBeGreaterThan(Date.now());
    expect(limited.headers['access-control-allow-origin']).toBe(SITE_ORIGIN);
    expect(openai.fake.mintRequests).toHaveLength(10);
    expect(t.logs.find('request refused').at(-1)).toMatchObject({ refusal: 'rate_limit', status: 429 });

    // another client still has its own budget
    expect((await from('10.0.0.2')).statusCode).toBe(200);
  });

  it('never limits /healthz and never origin-checks it', async () => {
    t = await openai.app({ RATE_LIMIT_PER_MINUTE: '1' });
    for (let i = 0; i < 30; i++) {
      expect((await t.app.inject({ method: 'GET', url: '/healthz', remoteAddress: '10.0.0.9' })).statusCode).toBe(200);
    }
  });

  it('with TRUST_PROXY=1, keys on the right-most X-Forwarded-For entry, whatever the client types on the left', async () => {
    t = await openai.app({ TRUST_PROXY: '1', RATE_LIMIT_PER_MINUTE: '2' });
    expect((await from('100.64.0.1', '1.1.1.1, 203.0.113.7')).statusCode).toBe(200);
    expect((await from('100.64.0.1', '2.2.2.2, 203.0.113.7')).statusCode).toBe(200);
    expectEnvelope(await from('100.64.0.1', '3.3.3.3, 203.0.113.7'), 429);
    // a different real client behind the same proxy is not affected
    expect((await from('100.64.0.1', '203.0.113.8')).statusCode).toBe(200);
  });

  it('with TRUST_PROXY=0, ignores X-Forwarded-For entirely', async () => {
    t = await openai.app({ RATE_LIMIT_PER_MINUTE: '1' });
    expect((await from('10.0.0.3', '198.51.100.1')).statusCode).toBe(200);
    expectEnvelope(await from('10.0.0.3', '198.51.100.2'), 429);
  });

  it('remembers a client through a busy minute of many other clients (more than the library default 5,000)', async () => {
    t = await openai.app({ RATE_LIMIT_PER_MINUTE: '1' });
    expect((await from('10.0.0.5')).statusCode).toBe(200);
    // 6,000 other clients; an invalid body is refused after the rate limit has counted it, without a mint.
    for (let i = 0; i < 6000; i++) {
      if (i % 100 === 0) await turn();
      const response = await t.app.inject({
        method: 'POST',
        url: '/v1/realtime/token',
        remoteAddress: `10.${Math.floor(i / 250)}.${i % 250}.9`,
        headers: { origin: SITE_ORIGIN, 'content-type': 'application/json' },
        payload: '{"voice":1}',
      });
      expect(response.statusCode).toBe(422);
    }
    expectEnvelope(await from('10.0.0.5'), 429);
  });

  it('RATE_LIMIT_BURST caps requests per second', async () => {
    t = await openai.app({ RATE_LIMIT_BURST: '2' });
    expect((await from('10.0.0.4')).statusCode).toBe(200);
    expect((await from('10.0.0.4')).statusCode).toBe(200);
    const burst = expectEnvelope(await from('10.0.0.4'), 429);
    expect(burst.error.message).toContain('per second');
    expect(burst.error.retry_after).toBe(1);
  });
});
