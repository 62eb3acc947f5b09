import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { expectEnvelope, useFakeOpenAI, type TestApp } from './support/app.js';
import { LeanHistogram } from '../src/metrics.js';

const openai = useFakeOpenAI();
let t: TestApp;


const scrape = async () => {
  const response = await t.app.inject({ method: 'GET', url: '/metrics', remoteAddress: '10.1.1.1' });
  expect(response.statusCode).toBe(200);
  expect(response.headers['content-type']).toContain('text/plain');
  return response.body;
};

describe('GET /metrics', () => {
  it('counts mints by model and outcome, refusals by reason, upstream latency, breaker and store state', async () => {
    t = await openai.app({ RATE_LIMIT_PER_MINUTE: '4', CIRCUIT_BREAKER_THRESHOLD: '1', OPENAI_MAX_RETRIES: '0' });
    expect((await t.mint({})).statusCode).toBe(200);
    expect((await t.mint({ model: 'gpt-realtime-mini' })).statusCode).toBe(200);
    expectEnvelope(await t.mint({}, { origin: 'https://evil.example' }), 403);
    expectEnvelope(await t.mint({ voice: 'nobody' }), 422);
    openai.fake.script({ kind: 'status', status: 500 });
    expectEnvelope(await t.mint({}), 503); // upstream; opens the breaker (threshold 1)
    expectEnvelope(await t.mint({}), 429); // 5th from this client within the minute (the 403 is not counted)
    expectEnvelope(await t.app.inject({ method: 'POST', url: '/v1/realtime/token', remoteAddress: '10.2.2.2', headers: { origin: 'https://www.espn.com' } }), 503); // breaker open

    const text = await scrape();
    expect(text).toMatch(/^realtime_token_mints_total\{model="gpt-realtime",outcome="minted"\} 1$/m);
    expect(text).toMatch(/^realtime_token_mints_total\{model="gpt-realtime-mini",outcome="minted"\} 1$/m);
    expect(text).toMatch(/^realtime_token_mints_total\{model="gpt-realtime",outcome="failed"\} 2$/m);
    for (const reason of ['origin', 'validation', 'upstream', 'rate_limit', 'breaker']) {
      expect(text).toMatch(new RegExp(`^realtime_token_refusals_total\\{reason="${reason}"\\} 1$`, 'm'));
    }
    expect(text).toMatch(/^openai_request_duration_seconds_count\{operation="client_secrets",outcome="200"\} 2$/m);
    expect(text).toMatch(/^openai_request_duration_seconds_count\{operation="client_secrets",outcome="500"\} 1$/m);
    expect(text).toMatch(/^circuit_breaker_state 2$/m);
    expect(text).toMatch(/^rate_limit_store_mode\{mode="memory"\} 1$/m);
    expect(text).toMatch(/^rate_limit_store_mode\{mode="redis"\} 0$/m);
    expect(text).toMatch(/^process_cpu_user_seconds_total /m);
    expect(text).toMatch(/^nodejs_eventloop_lag_seconds /m);
  });

  it('is not origin-checked and not rate limited', async () => {
    t = await openai.app({ RATE_LIMIT_PER_MINUTE: '1' });
    for (let i = 0; i < 5; i++) await scrape();
  });

  it('is off with METRICS_ENABLED=false', async () => {
    t = await openai.app({ METRICS_ENABLED: 'false' });
    expectEnvelope(await t.app.inject({ method: 'GET', url: '/metrics' }), 404);
  });
});

describe('LeanHistogram', () => {
  it("renders exactly as prom-client's own Histogram for the same observations", async () => {
    const buckets = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10];
    const reference = new Registry();
    const theirs = new Histogram({ name: 'h_seconds', help: 'A histogram.', labelNames: ['operation', 'outcome'], buckets, registers: [reference] });
    const lean = new Registry();
    const ours = new LeanHistogram('h_seconds', 'A histogram.', ['operation', 'outcome'], buckets, lean);
    const observations: [string, string, number][] = [
      ['client_secrets', '200', 0.004],
      ['client_secrets', '200', 0.3],
      ['client_secrets', '500', 12],
      ['calls', 'timeout', 10],
      ['client_secrets', '200', 0.05],
      ['calls', '201', 0.2],
    ];
    for (const [operation, outcome, seconds] of observations) {
      theirs.labels({ operation, outcome }).observe(seconds);
      ours.observe(operation, outcome, seconds);
    }
    const text = await lean.metrics();
    expect(text).toBe(await reference.metrics());
    expect(text).toMatch(/^h_seconds_bucket\{le="0.05",operation="client_secrets",outcome="200"\} 2$/m);
    // And as JSON, labels whole (prom-client adds exemplar fields, empty without exemplars).
    const withoutExemplars = (await reference.getMetricsAsJSON()).map((metric) => ({
      ...metric,
      values: metric.values.map((value) => Object.fromEntries(Object.entries(value).filter(([key]) => key !== 'exemplar'))),
    }));
    expect(await lean.getMetricsAsJSON()).toEqual(withoutExemplars);
  });
});
