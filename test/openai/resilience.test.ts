import { afterEach, describe, expect, it } from 'vitest';
import { retryAfterMs } from '../../src/openai/transport.js';
import { FakeOpenAI, FAKE_API_KEY, type Behaviour } from '../support/fake-openai.js';
import { expectEnvelope, ManualClock, useFakeOpenAI, type Env, type TestApp } from '../support/app.js';

const openai = useFakeOpenAI();

function app(env: Env = {}, clock?: ManualClock): Promise<TestApp> {
  return openai.app({ OPENAI_TIMEOUT_MS: '300', ...env }, { random: () => 0.5, ...(clock ? { now: clock.now } : {}) });
}

afterEach(() => {
  // Whatever happened in the test, no secret reached a log line.
  for (const t of openai.apps) {
    expect(t.logs.raw).not.toContain(FAKE_API_KEY);
    expect(t.logs.raw).not.toMatch(/ek_fake/);
    expect(t.logs.raw).not.toMatch(/authorization/i);
  }
});

const status = (code: number, headers?: Record<string, string>): Behaviour => ({ kind: 'status', status: code, headers });

describe('retries', () => {
  it.each([408, 409, 429, 500, 502, 503])('retries %i and then succeeds', async (code) => {
    const t = await app();
    openai.fake.script(status(code), status(code));
    expect((await t.mint()).statusCode).toBe(200);
    expect(openai.fake.mintRequests).toHaveLength(3);
  });

  it.each([400, 401, 403, 404, 422])('never retries %i', async (code) => {
    const t = await app();
    openai.fake.script(status(code));
    expectEnvelope(await t.mint(), 502);
    expect(openai.fake.mintRequests).toHaveLength(1);
  });

  it('gives up after OPENAI_MAX_RETRIES: 1 + 2 attempts by default, then 503', async () => {
    const t = await app();
    openai.fake.script(status(500), status(500), status(500), status(500));
    const envelope = expectEnvelope(await t.mint(), 503);
    expect(envelope.error.retry_after).toBeGreaterThan(0);
    expect(openai.fake.mintRequests).toHaveLength(3);
  });

  it('OPENAI_MAX_RETRIES=0 means one attempt', async () => {
    const t = await app({ OPENAI_MAX_RETRIES: '0' });
    openai.fake.script(status(503));
    expectEnvelope(await t.mint(), 503);
    expect(openai.fake.mintRequests).toHaveLength(1);
  });

  it('reads at most 1 MiB of an answer: a 3 MiB error is a refusal, a 3 MiB 200 is unusable (502), never a crash', async () => {
    const t = await app({ OPENAI_MAX_RETRIES: '0' });
    const huge = `{"error":{"message":"${'x'.repeat(3 << 20)}","type":"invalid_request_error"}}`;
    openai.fake.script({ kind: 'raw', status: 400, body: huge });
    expectEnvelope(await t.mint(), 502);
    // A whole secret, padded past the cap: cut at 1 MiB it is no JSON, so no use.
    const padded = `{"value":"ek_x","expires_at":1,"session":{"id":"sess_x"},"pad":"${'y'.repeat(3 << 20)}"}`;
    openai.fake.script({ kind: 'raw', status: 200, body: padded });
    expectEnvelope(await t.mint(), 502);
    // The connection is usable afterwards.
    expect((await t.mint()).statusCode).toBe(200);
  });

  it('a reset connection is retried: reset then success -> 200', async () => {
    const t = await app();
    openai.fake.script({ kind: 'reset' });
    expect((await t.mint()).statusCode).toBe(200);
    expect(openai.fake.mintRequests).toHaveLength(2);
  });

  it('connection refused after retries -> 503', async () => {
    const closed = await FakeOpenAI.start();
    const baseUrl = closed.baseUrl;
    await closed.close();
    const t = await openai.app({ OPENAI_BASE_URL: baseUrl, OPENAI_MAX_RETRIES: '1' }, { random: () => 0 });
    expectEnvelope(await t.mint(), 503);
  });

  it('honours retry-after-ms: the retry waits at least that long', async () => {
    const t = await app();
    openai.fake.script(status(429, { 'retry-after-ms': '400' }));
    expect((await t.mint()).statusCode).toBe(200);
    const [first, second] = openai.fake.mintRequests;
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(390);
  });

  it('honours Retry-After in seconds', async () => {
    const t = await app({ OPENAI_TIMEOUT_MS: '2000' });
    openai.fake.script(status(503, { 'retry-after': '1' }));
    expect((await t.mint()).statusCode).toBe(200);
    const [first, second] = openai.fake.mintRequests;
    expect(second!.at - first!.at).toBeGreaterThanOrEqual(990);
  });

  it('a Retry-After past the deadline gives up at once with 503 and that retry_after', async () => {
    const t = await app();
    openai.fake.script(status(429, { 'retry-after': '120' }));
    const started = performance.now();
    const envelope = expectEnvelope(await t.mint(), 503);
    expect(performance.now() - started).toBeLessThan(250);
    expect(envelope.error.retry_after).toBe(120);
    expect(openai.fake.mintRequests).toHaveLength(1);
  });
});

describe('timeouts', () => {
  it('a hanging OpenAI -> 504 within timeout x attempts + backoff', async () => {
    const t = await app({ OPENAI_TIMEOUT_MS: '200', OPENAI_MAX_RETRIES: '1' });
    openai.fake.script({ kind: 'hang' }, { kind: 'hang' });
    const started = performance.now();
    expectEnvelope(await t.mint(), 504);
    const elapsed = performance.now() - started;
    // 2 attempts x 200 ms + one backoff of at most 2 s (jitter pinned at 0.5 of 200 ms here)
    expect(elapsed).toBeGreaterThanOrEqual(400);
    expect(elapsed).toBeLessThan(2 * 200 + 2000);
    expect(openai.fake.mintRequests).toHaveLength(2);
  });

  it('slow headers count against the timeout', async () => {
    const t = await app({ OPENAI_TIMEOUT_MS: '150', OPENAI_MAX_RETRIES: '0' });
    openai.fake.script({ kind: 'status', status: 200, delayMs: 400 });
    expectEnvelope(await t.mint(), 504);
  });

  it('a body that stalls after the headers counts against the same timeout', async () => {
    const t = await app({ OPENAI_TIMEOUT_MS: '150', OPENAI_MAX_RETRIES: '0' });
    openai.fake.script({ kind: 'stall-body' });
    const started = performance.now();
    expectEnvelope(await t.mint(), 504);
    expect(performance.now() - started).toBeLessThan(1_000);
  });
});

describe('circuit breaker', () => {
  const breakerEnv = { CIRCUIT_BREAKER_THRESHOLD: '2', CIRCUIT_BREAKER_COOLDOWN_MS: '30000', OPENAI_MAX_RETRIES: '0' };

  async function health(t: TestApp) {
    return (await t.app.inject({ method: 'GET', url: '/healthz' })).json<{ circuit_breaker: { state: string } }>().circuit_breaker;
  }

  it('opens after THRESHOLD failed mints, fails fast without calling OpenAI, probes after the cooldown, closes on success', async () => {
    const clock = new ManualClock();
    const t = await app(breakerEnv, clock);
    openai.fake.script(status(500), status(500));
    expectEnvelope(await t.mint(), 503);
    expect((await health(t)).state).toBe('closed');
    expectEnvelope(await t.mint(), 503);
    expect((await health(t)).state).toBe('open');

    const started = performance.now();
    const fast = expectEnvelope(await t.mint(), 503);
    const fastMs = performance.now() - started;
    expect(fast.error.retry_after).toBe(30);
    expect(openai.fake.mintRequests).toHaveLength(2);
    expect(fastMs).toBeLessThan(50);
    expect(t.logs.find('request refused').at(-1)).toMatchObject({ refusal: 'breaker' });

    clock.advance(30_000);
    expect((await t.mint()).statusCode).toBe(200);
    expect(openai.fake.mintRequests).toHaveLength(3);
    expect(await health(t)).toMatchObject({ state: 'closed', consecutive_failures: 0 });

    const transitions = t.logs.lines.filter((l) => typeof l.breaker_to === 'string').map((l) => l.breaker_to);
    expect(transitions).toEqual(['open', 'half_open', 'closed']);
  });

  it('a failed probe opens it again for another cooldown; one probe at a time', async () => {
    const clock = new ManualClock();
    const t = await app(breakerEnv, clock);
    openai.fake.script(status(500), status(500));
    await t.mint();
    await t.mint();
    clock.advance(30_000);
    openai.fake.script({ kind: 'status', status: 500, delayMs: 100 });
    const [probe, concurrent] = await Promise.all([t.mint(), t.mint()]);
    expectEnvelope(probe, 503);
    expectEnvelope(concurrent, 503);
    expect(openai.fake.mintRequests).toHaveLength(3);
    expect((await health(t)).state).toBe('open');
    clock.advance(29_000);
    expectEnvelope(await t.mint(), 503);
    expect(openai.fake.mintRequests).toHaveLength(3);
  });

  it('refusals OpenAI chooses (401) do not open it', async () => {
    const t = await app(breakerEnv);
    openai.fake.script(status(401), status(401), status(401));
    for (let i = 0; i < 3; i++) expectEnvelope(await t.mint(), 502);
    expect((await health(t)).state).toBe('closed');
    expect(openai.fake.mintRequests).toHaveLength(3);
  });

  it('logs OpenAI’s status, code and request id, its message reduced to plain words, and never returns it', async () => {
    const t = await app();
    openai.fake.script({
      kind: 'status',
      status: 401,
      body: { error: { message: `Incorrect API key provided: ${FAKE_API_KEY}.`, type: 'invalid_request_error', code: 'invalid_api_key' } },
    });
    const response = await t.mint();
    expectEnvelope(response, 502);
    expect(response.body).not.toContain('Incorrect API key');
    const failure = t.logs.find('OpenAI call failed')[0];
    expect(failure).toMatchObject({
      upstream_status: 401,
      openai_request_id: expect.stringMatching(/^req_[0-9a-f]{32}$/) as unknown,
      openai_type: 'invalid_request_error',
      openai_code: 'invalid_api_key',
      openai_message: 'Incorrect API key provided: [cut]',
    });
  });
});

describe('under pressure', () => {
  it('answers 503 in the envelope while the event loop is stalled, and /healthz stays 200', async () => {
    const t = await app();
    // Stall the event loop well past the 1 s limit, as a runaway CPU hog would.
    const until = performance.now() + 1_500;
    while (performance.now() < until) {
      // busy
    }
    let refused: Awaited<ReturnType<TestApp['mint']>> | undefined;
    let reachedOpenAI = false;
    await expect
      .poll(
        async () => {
          const before = openai.fake.mintRequests.length;
          const response = await t.mint();
          if (response.statusCode === 503) {
            refused = response;
            reachedOpenAI = openai.fake.mintRequests.length !== before;
          }
          return response.statusCode;
        },
        { timeout: 3_000, interval: 20 },
      )
      .toBe(503);
    const envelope = expectEnvelope(refused!, 503);
    expect(envelope.error.message).toMatch(/overloaded/);
    expect(envelope.error.retry_after).toBe(5);
    expect(refused!.headers['retry-after']).toBe('5');
    expect(reachedOpenAI).toBe(false);
    expect((await t.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);
    // The next second without a stall admits new work again (polled on /, which is refused like
    // any other route while overloaded, so the polling spends no quota).
    await expect.poll(async () => (await t.app.inject({ method: 'GET', url: '/' })).statusCode, { timeout: 5_000, interval: 20 }).toBe(200);
    expect((await t.mint()).statusCode).toBe(200);
  });
});

describe('retryAfterMs', () => {
  it('reads retry-after-ms, Retry-After seconds and Retry-After HTTP dates', () => {
    const now = Date.parse('2026-11-23T12:00:00Z');
    expect(retryAfterMs({ 'retry-after-ms': '250', 'retry-after': '9' }, now)).toBe(250);
    expect(retryAfterMs({ 'retry-after': '3' }, now)).toBe(3000);
    expect(retryAfterMs({ 'retry-after': 'Mon, 23 Nov 2026 12:00:05 GMT' }, now)).toBe(5000);
    expect(retryAfterMs({ 'retry-after': 'Mon, 23 Nov 2026 11:00:00 GMT' }, now)).toBe(0);
    expect(retryAfterMs({ 'retry-after': 'soon' }, now)).toBeUndefined();
    expect(retryAfterMs({}, now)).toBeUndefined();
  });
});
