import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { MemoryLedger } from '../../src/usage/ledger.js';
import { Pricing } from '../../src/usage/pricing.js';
import { SpendControl, type MintAdmission, type SpendSettings } from '../../src/usage/spend.js';

const T0 = Date.UTC(2026, 11, 1, 15, 30);
const OFF: SpendSettings = {
  mintsPerClientPerDay: 0,
  globalMintsPerDay: undefined,
  spendPerClientPerDayUsd: undefined,
  globalSpendPerDayUsd: undefined,
  secretSpendEstimateUsd: 0.5,
};

function control(settings: Partial<SpendSettings>, options: { capacity?: number; activeCalls?: Map<string, number> } = {}) {
  const registry = new Registry();
  let now = T0;
  const ledger = new MemoryLedger({ capacity: options.capacity });
  const activeCalls = options.activeCalls;
  const spend = new SpendControl({ ...OFF, ...settings }, new Pricing(), ledger, {
    registry,
    now: () => now,
    activeCalls: activeCalls ? async () => activeCalls : undefined,
  });
  return { spend, registry, ledger, advance: (ms: number) => (now += ms) };
}

function refused(admission: MintAdmission) {
  if (admission.admitted) throw new Error('expected a refusal');
  return admission.error;
}

// gpt-realtime: 10,000 audio output tokens = $0.64; 1,000 = $0.064.
const audioOut = (tokens: number) => ({ output_tokens: tokens, output_token_details: { audio_tokens: tokens } });

describe('SpendControl: mints against the quota and the caps', () => {
  it('with a cap on, each secret charges the estimate; at the cap the client gets 429 naming the spend', async () => {
    const { spend, advance } = control({ spendPerClientPerDayUsd: 1 });
    expect(spend.enforcing).toBe(true);
    expect((await spend.admitMint('ip:1', 'secret')).admitted).toBe(true);
    advance(1_000);
    expect((await spend.admitMint('ip:1', 'secret')).admitted).toBe(true);
    advance(1_000);
    const error = refused(await spend.admitMint('ip:1', 'secret'));
    expect(error.statusCode).toBe(429);
    expect(error.reason).toBe('spend');
    expect(error.message).toBe('Daily spend cap of $1.00 reached ($1.00 spent); retry in 86398 s.');
    expect(error.retryAfter).toBe(86_398);
    expect(error.details).toEqual({ limit_usd: 1, spent_usd: 1 });
    // another client is not affected
    expect((await spend.admitMint('ip:2', 'secret')).admitted).toBe(true);
  });

  it('a call is not charged the estimate: its usage is priced exactly by the sideband', async () => {
    const { spend } = control({ spendPerClientPerDayUsd: 1 });
    for (let i = 0; i < 5; i++) expect((await spend.admitMint('ip:1', 'call')).admitted).toBe(true);
    await spend.charge('ip:1', 'gpt-realtime', audioOut(15_625)); // exactly $1.00
    const error = refused(await spend.admitMint('ip:1', 'call'));
    expect(error.details).toEqual({ limit_usd: 1, spent_usd: 1 });
  });

  it('at the global cap every client gets 503 budget with the spend', async () => {
    const { spend } = control({ globalSpendPerDayUsd: 1.5, spendPerClientPerDayUsd: 10 });
    for (const client of ['a', 'b', 'c']) expect((await spend.admitMint(client, 'secret')).admitted).toBe(true);
    const error = refused(await spend.admitMint('d', 'secret'));
    expect(error.statusCode).toBe(503);
    expect(error.reason).toBe('budget');
    expect(error.message).toBe("The service's daily spend cap of $1.50 is reached; try again when it turns.");
    expect(error.details).toEqual({ limit_usd: 1.5, spent_usd: 1.5 });
    expect(error.retryAfter).toBe(86_400);
  });

  it('the daily quota: 429 quota with limit, remaining and reset time, and the RateLimit state while it lasts', async () => {
    const { spend, advance } = control({ mintsPerClientPerDay: 2 });
    expect(spend.enforcing).toBe(false);
    const first = await spend.admitMint('ip:1', 'secret');
    expect(first).toMatchObject({ admitted: true, day: { limit: 2, remaining: 1, resetMs: 86_400_000 } });
    advance(60_000);
    await spend.admitMint('ip:1', 'secret');
    const admission = await spend.admitMint('ip:1', 'secret');
    expect(admission.day).toEqual({ limit: 2, remaining: 0, resetMs: 86_340_000 });
    const error = refused(admission);
    expect(error.statusCode).toBe(429);
    expect(error.message).toBe('Daily quota of 2 client secrets spent; retry in 86340 s.');
    expect(error.details).toEqual({ limit: 2, remaining: 0, reset_time: new Date(T0 + 86_400_000).toISOString() });
  });

  it('with no cap on, a secret charges nothing and nothing is refused for spend', async () => {
    const { spend } = control({ mintsPerClientPerDay: 100 });
    for (let i = 0; i < 10; i++) await spend.admitMint('ip:1', 'secret');
    expect((await spend.report()).global).toMatchObject({ mints: 10, spend_usd: 0 });
  });

  it('a refund gives the mint and its estimate back (a request refused after admission)', async () => {
    const { spend } = control({ mintsPerClientPerDay: 1, spendPerClientPerDayUsd: 1 });
    const admission = await spend.admitMint('ip:1', 'secret');
    if (!admission.admitted) throw new Error('expected an admission');
    admission.refund();
    expect((await spend.admitMint('ip:1', 'secret')).admitted).toBe(true);
    expect((await spend.report()).clients[0]).toMatchObject({ mints: 1, spend_usd: 0.5 });
  });

  it('a full ledger refuses a new client with 503 overloaded, never forgetting one', async () => {
    const { spend } = control({ mintsPerClientPerDay: 1 }, { capacity: 1 });
    await spend.admitMint('a', 'secret');
    const error = refused(await spend.admitMint('b', 'secret'));
    expect(error).toMatchObject({ statusCode: 503, reason: 'overloaded', retryAfter: 60 });
    expect(refused(await spend.admitMint('a', 'secret')).reason).toBe('quota');
  });
});

describe('SpendControl: what the call manager uses (CallSpend)', () => {
  it('charge prices the usage, adds it to both windows and says which cap the call crossed', async () => {
    const { spend } = control({ spendPerClientPerDayUsd: 1, globalSpendPerDayUsd: 2 });
    const first = await spend.charge('user:a', 'gpt-realtime', audioOut(10_000));
    expect(first).toMatchObject({ priced: { costNanoUsd: 640_000_000, tokens: { audio_output: 10_000 } }, capped: undefined });
    expect(await spend.charge('user:a', 'gpt-realtime', audioOut(6_000))).toMatchObject({ capped: 'client' });
    expect(await spend.charge('user:b', 'gpt-realtime', audioOut(10_000))).toMatchObject({ capped: undefined });
    // the global cap outranks the client's: every call must end
    expect(await spend.charge('user:b', 'gpt-realtime', audioOut(10_000))).toMatchObject({ capped: 'global' });
    expect(await spend.capped(['user:a', 'user:b', 'user:c'])).toEqual({ global: true, clients: new Set(['user:a', 'user:b']) });
  });

  it('garbage or an unpriced model is a problem, never a charge or a throw', async () => {
    const { spend } = control({ spendPerClientPerDayUsd: 1 });
    expect(await spend.charge('user:a', 'gpt-realtime', { output_tokens: -1 })).toEqual({
      problem: 'usage.output_tokens is not a whole number of tokens >= 0',
      capped: undefined,
    });
    expect(await spend.charge('user:a', 'gpt-unknown', audioOut(1))).toEqual({ problem: 'no price for model gpt-unknown', capped: undefined });
    expect(await spend.capped(['user:a'])).toEqual({ global: false, clients: new Set() });
  });

  it('with no cap on it does not enforce, but still counts the spend (metric and report)', async () => {
    const { spend, registry } = control({});
    expect(spend.enforcing).toBe(false);
    expect(await spend.charge('user:a', 'gpt-realtime-mini', audioOut(50_000))).toMatchObject({ priced: { costUsd: 1 }, capped: undefined });
    expect(await spend.capped(['user:a'])).toEqual({ global: false, clients: new Set() });
    expect((await spend.report()).clients[0]).toMatchObject({ client: 'user:a', spend_usd: 1 });
    const text = await registry.metrics();
    expect(text).toContain('realtime_spend_usd_total{model="gpt-realtime-mini"} 1');
    expect(text).toContain('realtime_spend_window_usd{scope="global"} 1');
    expect(text).not.toContain('realtime_spend_limit_usd{');
  });
});

describe('SpendControl: metrics and the report', () => {
  it('/metrics: spend by model (estimates under the secret\'s model), the global window, the caps', async () => {
    const { spend, registry } = control({ spendPerClientPerDayUsd: 2.5, globalSpendPerDayUsd: 100 });
    await spend.admitMint('ip:1', 'secret');
    spend.countSecret('gpt-realtime-mini');
    await spend.charge('ip:1', 'gpt-realtime', audioOut(1_000));
    const text = await registry.metrics();
    expect(text).toContain('realtime_spend_usd_total{model="gpt-realtime-mini"} 0.5');
    expect(text).toContain('realtime_spend_usd_total{model="gpt-realtime"} 0.064');
    expect(text).toContain('realtime_spend_window_usd{scope="global"} 0.564');
    expect(text).toContain('realtime_spend_limit_usd{scope="client"} 2.5');
    expect(text).toContain('realtime_spend_limit_usd{scope="global"} 100');
  });

  it('report(): the windows, the top clients with their active calls, 24 hours with refusals', async () => {
    const { spend } = control(
      { mintsPerClientPerDay: 5, globalMintsPerDay: 1_000, spendPerClientPerDayUsd: 1, globalSpendPerDayUsd: 50 },
      { activeCalls: new Map([['user:b', 2]]) },
    );
    await spend.admitMint('user:a', 'secret');
    await spend.admitMint('user:b', 'call');
    await spend.charge('user:b', 'gpt-realtime', audioOut(15_625));
    spend.countRefusal('quota');
    spend.countRefusal('spend');
    const report = await spend.report();
    expect(report).toMatchObject({
      window_seconds: 86400,
      store: 'memory',
      global: { mints: 2, spend_usd: 1.5, mints_limit: 1_000, spend_limit_usd: 50, resets_at: new Date(T0 + 86_400_000).toISOString() },
      clients: [
        { client: 'user:b', mints: 1, spend_usd: 1, active_calls: 2, resets_at: new Date(T0 + 86_400_000).toISOString() },
        { client: 'user:a', mints: 1, spend_usd: 0.5, active_calls: 0 },
      ],
    });
    expect(report.hourly).toHaveLength(24);
    expect(report.hourly[23]).toEqual({ hour: '2026-12-01T15:00:00.000Z', mints: 2, spend_usd: 1.5, refusals: { quota: 1, spend: 1 } });
    expect(report.hourly[0]?.hour).toBe('2026-11-30T16:00:00.000Z');
  });

  it('report() before anything was counted: an empty window with no reset time', async () => {
    const { spend } = control({});
    expect((await spend.report()).global).toEqual({ mints: 0, spend_usd: 0, mints_limit: null, spend_limit_usd: null, resets_at: null });
  });
});
