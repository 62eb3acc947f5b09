import { describe, expect, it } from 'vitest';
import { expectEnvelope, SITE_ORIGIN, useFakeOpenAI, type TestApp } from '../../support/app.js';
import { postSdp } from '../../support/calls.js';

const openai = useFakeOpenAI();

const mint = (t: TestApp, ip: string, body?: unknown) =>
  t.app.inject({
    method: 'POST',
    url: '/v1/realtime/token',
    remoteAddress: ip,
    headers: { origin: SITE_ORIGIN, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    payload: body === undefined ? undefined : JSON.stringify(body),
  });

// gpt-realtime: 15,625 audio output tokens cost exactly $1.00.
const DOLLAR_OF_AUDIO = { output_tokens: 15_625, output_token_details: { audio_tokens: 15_625 } };

describe('spend caps on mints (SPEND_PER_CLIENT_PER_DAY_USD, GLOBAL_SPEND_PER_DAY_USD)', () => {
  it('each secret charges $0.50 to the client\'s cap: at $1.00 the third gets 429 naming the spend, until the window turns', async () => {
    const t = await openai.app({ SPEND_PER_CLIENT_PER_DAY_USD: '1' });
    expect((await mint(t, '10.8.0.1')).statusCode).toBe(200);
    expect((await mint(t, '10.8.0.1')).statusCode).toBe(200);
    const refused = await mint(t, '10.8.0.1');
    const envelope = expectEnvelope(refused, 429);
    expect(envelope.error.message).toMatch(/^Daily spend cap of \$1\.00 reached \(\$1\.00 spent\); retry in 864\d\d s\.$/);
    expect(envelope.error.details).toEqual({ limit_usd: 1, spent_usd: 1 });
    expect(envelope.error.retry_after).toBeGreaterThan(86_000);
    expect(refused.headers['retry-after']).toBe(String(envelope.error.retry_after));
    expect(t.logs.find('request refused').at(-1)).toMatchObject({ refusal: 'spend', status: 429 });
    // another client still mints; only two secrets reached OpenAI for the first
    expect((await mint(t, '10.8.0.2')).statusCode).toBe(200);
    expect(openai.fake.mintRequests).toHaveLength(3);
  });

  it('at the global cap every client gets 503 budget with the spend, and /metrics shows spend and caps', async () => {
    const t = await openai.app({ GLOBAL_SPEND_PER_DAY_USD: '1', SECRET_SPEND_ESTIMATE_USD: '0.25' });
    for (let i = 1; i <= 4; i++) expect((await mint(t, `10.9.0.${i}`)).statusCode).toBe(200);
    const refused = await mint(t, '10.9.0.5');
    const envelope = expectEnvelope(refused, 503);
    expect(envelope.error.message).toBe("The service's daily spend cap of $1.00 is reached; try again when it turns.");
    expect(envelope.error.details).toEqual({ limit_usd: 1, spent_usd: 1 });
    expect(envelope.error.retry_after).toBeGreaterThan(86_000);
    expect(t.logs.find('request refused').at(-1)).toMatchObject({ refusal: 'budget', status: 503, budget: 'spend' });
    expect(t.logs.find('global daily spend cap 80 % used')).toHaveLength(1);
    const text = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(text).toContain('realtime_spend_usd_total{model="gpt-realtime"} 1');
    expect(text).toContain('realtime_spend_window_usd{scope="global"} 1');
    expect(text).toContain('realtime_spend_limit_usd{scope="global"} 1');
    expect(text).not.toContain('realtime_spend_limit_usd{scope="client"}');
    expect(text).toContain('realtime_token_refusals_total{reason="budget"} 1');
  });

  it('a request that is invalid, or fails upstream, is charged nothing', async () => {
    const t = await openai.app({ SPEND_PER_CLIENT_PER_DAY_USD: '1', MINTS_PER_CLIENT_PER_DAY: '2' });
    for (let i = 0; i < 5; i++) expectEnvelope(await mint(t, '10.10.0.1', { model: 'gpt-nope' }), 422);
    openai.fake.script({ kind: 'status', status: 500 }, { kind: 'status', status: 500 }, { kind: 'status', status: 500 });
    expect((await mint(t, '10.10.0.1')).statusCode).toBeGreaterThanOrEqual(500);
    expect((await mint(t, '10.10.0.1')).statusCode).toBe(200);
    expect((await mint(t, '10.10.0.1')).statusCode).toBe(200);
    expectEnvelope(await mint(t, '10.10.0.1'), 429);
    const report = await t.app.spend.report();
    expect(report.clients).toEqual([expect.objectContaining({ client: 'ip:10.10.0.1', mints: 2, spend_usd: 1 })]);
  });

  it('a relayed call counts as a mint but is not charged the secret estimate (its usage is priced instead)', async () => {
    const t = await openai.app({ SPEND_PER_CLIENT_PER_DAY_USD: '1', MAX_CONCURRENT_CALLS_PER_CLIENT: '5' });
    for (let i = 0; i < 3; i++) expect((await postSdp(t.app, undefined, { remoteAddress: '10.11.0.1' })).statusCode).toBe(201);
    const [row] = (await t.app.spend.report()).clients;
    expect(row).toMatchObject({ client: 'ip:10.11.0.1', mints: 3, spend_usd: 0 });
    // the sideband's charge of a dollar of audio reaches the cap: the next call and mint are refused
    expect(await t.app.spend.charge('ip:10.11.0.1', 'gpt-realtime', DOLLAR_OF_AUDIO)).toMatchObject({ capped: 'client' });
    expect(expectEnvelope(await postSdp(t.app, undefined, { remoteAddress: '10.11.0.1' }), 429).error.details).toEqual({ limit_usd: 1, spent_usd: 1 });
    expectEnvelope(await mint(t, '10.11.0.1'), 429);
  });

  it('with no cap on nothing is charged for a secret, and /healthz says where the windows are counted', async () => {
    const t = await openai.app();
    for (let i = 0; i < 3; i++) expect((await mint(t, '10.12.0.1')).statusCode).toBe(200);
    expect((await t.app.spend.report()).global).toMatchObject({ mints: 3, spend_usd: 0, spend_limit_usd: null });
    const health = (await t.app.inject({ method: 'GET', url: '/healthz' })).json<{ usage_store: string }>();
    expect(health.usage_store).toBe('memory');
    expect((await t.app.inject({ method: 'GET', url: '/metrics' })).body).not.toContain('realtime_spend_usd_total{');
  });
});
