import { describe, expect, it } from 'vitest';
import { LogCapture } from '../support/app.js';
import { createLogger } from '../../src/logger.js';
import { loadConfig } from '../../src/config.js';
import { DAY_MS, MemoryLedger } from '../../src/usage/ledger.js';

const T0 = Date.UTC(2026, 11, 1, 15, 20);
const MINT = { mints: 1, spendNano: 0 };
const SECRET = { mints: 1, spendNano: 500_000_000 };

function logged() {
  const logs = new LogCapture();
  const config = loadConfig({ OPENAI_API_KEY: 'sk-test', ALLOWED_ORIGINS: 'https://www.espn.com', LOG_LEVEL: 'debug' });
  return { logs, log: createLogger(config, logs) };
}

describe('MemoryLedger: the daily quota', () => {
  it('admits up to the quota, then refuses with the window; other clients are unaffected', async () => {
    const ledger = new MemoryLedger();
    for (let i = 1; i <= 3; i++) {
      const admitted = await ledger.admit('a', MINT, { clientMints: 3 }, T0 + i);
      expect(admitted).toMatchObject({ admitted: true, client: { mints: i, resetAt: T0 + 1 + DAY_MS } });
    }
    const refused = await ledger.admit('a', MINT, { clientMints: 3 }, T0 + 10);
    expect(refused).toEqual({ admitted: false, refusal: 'quota', window: { mints: 3, spendNano: 0, spendUsd: 0, resetAt: T0 + 1 + DAY_MS } });
    expect(await ledger.admit('b', MINT, { clientMints: 3 }, T0 + 11)).toMatchObject({ admitted: true, client: { mints: 1 } });
    // refused requests are not counted: still 3, the global window saw 4 mints
    const { clients, global } = await ledger.windows(['a'], T0 + 12);
    expect(clients.get('a')?.mints).toBe(3);
    expect(global.mints).toBe(4);
  });

  it('the window turns a day after the client\'s first counted mint', async () => {
    const ledger = new MemoryLedger();
    await ledger.admit('a', MINT, { clientMints: 1 }, T0);
    expect(await ledger.admit('a', MINT, { clientMints: 1 }, T0 + DAY_MS - 1)).toMatchObject({ admitted: false, refusal: 'quota' });
    expect(await ledger.admit('a', MINT, { clientMints: 1 }, T0 + DAY_MS)).toMatchObject({
      admitted: true,
      client: { mints: 1, resetAt: T0 + 2 * DAY_MS },
    });
  });
});

describe('MemoryLedger: spend caps', () => {
  it('refuses a client once spent >= cap (429 spend), and everyone once the global spend reaches its cap (budget)', async () => {
    const ledger = new MemoryLedger();
    const limits = { clientSpendNano: 1_000_000_000, globalSpendNano: 2_000_000_000 };
    expect(await ledger.admit('a', SECRET, limits, T0)).toMatchObject({ admitted: true, client: { spendUsd: 0.5 } });
    expect(await ledger.admit('a', SECRET, limits, T0)).toMatchObject({ admitted: true, client: { spendUsd: 1 } });
    expect(await ledger.admit('a', SECRET, limits, T0)).toMatchObject({ admitted: false, refusal: 'spend', window: { spendNano: 1_000_000_000 } });
    await ledger.admit('b', SECRET, limits, T0);
    expect(await ledger.admit('c', SECRET, limits, T0)).toMatchObject({ admitted: true, global: { spendUsd: 2 } });
    expect(await ledger.admit('d', SECRET, limits, T0)).toMatchObject({ admitted: false, refusal: 'budget', window: { spendUsd: 2 } });
  });

  it('a call\'s charge adds to both windows and answers the totals; refunds never go below zero', async () => {
    const ledger = new MemoryLedger();
    await ledger.charge('a', { mints: 0, spendNano: 700 }, T0);
    const after = await ledger.charge('a', { mints: 0, spendNano: 300 }, T0);
    expect(after).toMatchObject({ client: { spendNano: 1_000 }, global: { spendNano: 1_000 } });
    ledger.record('a', { mints: -1, spendNano: -5_000 }, T0);
    const { clients, global } = await ledger.windows(['a'], T0);
    expect(clients.get('a')).toMatchObject({ mints: 0, spendNano: 0 });
    expect(global).toMatchObject({ mints: 0, spendNano: 0 });
  });
});

describe('MemoryLedger: bounded, and nobody is forgotten', () => {
  it('refuses new clients when full instead of evicting a spent one, logs it once, and has room again once windows expire', async () => {
    const { logs, log } = logged();
    const ledger = new MemoryLedger({ capacity: 100, log });
    await ledger.admit('spent', MINT, { clientMints: 1 }, T0);
    for (let i = 0; i < 99; i++) expect((await ledger.admit(`other-${i}`, MINT, { clientMints: 1 }, T0 + 1 + i)).admitted).toBe(true);
    for (let i = 0; i < 1_000; i++) {
      expect(await ledger.admit(`flood-${i}`, MINT, { clientMints: 1 }, T0 + 200)).toEqual({ admitted: false, refusal: 'full' });
    }
    expect(await ledger.admit('spent', MINT, { clientMints: 1 }, T0 + 300)).toMatchObject({ admitted: false, refusal: 'quota' });
    expect(logs.lines.filter((line) => String(line.msg).startsWith('usage ledger full'))).toHaveLength(1);
    expect(ledger.clientCount).toBe(100);

    // The first window ends: its slot is free for a new client, the others stay.
    expect(await ledger.admit('late', MINT, { clientMints: 1 }, T0 + DAY_MS)).toMatchObject({ admitted: true });
    expect(await ledger.admit('other-5', MINT, { clientMints: 1 }, T0 + DAY_MS)).toMatchObject({ admitted: false, refusal: 'quota' });
  });

  it('records without a limit skip a client it has no room for; charges of admitted calls are kept past the capacity', async () => {
    const ledger = new MemoryLedger({ capacity: 2 });
    ledger.record('a', MINT, T0);
    ledger.record('b', MINT, T0);
    ledger.record('c', MINT, T0);
    expect(ledger.clientCount).toBe(2);
    await ledger.charge('c', { mints: 0, spendNano: 10 }, T0);
    expect((await ledger.windows(['c'], T0)).clients.get('c')?.spendNano).toBe(10);
    expect((await ledger.windows([], T0)).global).toMatchObject({ mints: 3, spendNano: 10 });
  });
});

describe('MemoryLedger: the report data', () => {
  it('ranks clients by spend, then mints, and keeps 24 hourly buckets with refusals by reason', async () => {
    const ledger = new MemoryLedger();
    await ledger.admit('mints-3', MINT, {}, T0);
    await ledger.admit('mints-3', MINT, {}, T0);
    await ledger.admit('mints-3', MINT, {}, T0);
    await ledger.admit('spend-1', SECRET, {}, T0 - 2 * 3_600_000);
    await ledger.charge('spend-2', { mints: 0, spendNano: 900_000_000 }, T0);
    ledger.countRefusal('quota', T0);
    ledger.countRefusal('quota', T0);
    ledger.countRefusal('spend', T0 - 3_600_000);
    ledger.countRefusal('rate_limit', T0 - 25 * 3_600_000);

    const snapshot = await ledger.snapshot(T0, 100);
    expect(snapshot.store).toBe('memory');
    expect(snapshot.clients.map((row) => row.client)).toEqual(['spend-2', 'spend-1', 'mints-3']);
    expect(snapshot.global).toMatchObject({ mints: 4, spendNano: 1_400_000_000 });
    expect(snapshot.hourly).toHaveLength(24);
    const current = snapshot.hourly[23];
    expect(current).toMatchObject({ hour: Date.UTC(2026, 11, 1, 15), mints: 3, spendNano: 900_000_000, refusals: { quota: 2 } });
    expect(snapshot.hourly[22]?.refusals).toEqual({ spend: 1 });
    expect(snapshot.hourly[21]).toMatchObject({ mints: 1, spendNano: 500_000_000 });
    // older than 24 h: gone
    expect(snapshot.hourly.some((hour) => hour.refusals.rate_limit)).toBe(false);
    expect((await ledger.snapshot(T0, 1)).clients).toHaveLength(1);
  });

  it('holds its default capacity of 200,000 clients, then refuses the next one', async () => {
    const ledger = new MemoryLedger();
    for (let i = 0; i < 200_000; i++) await ledger.admit(`client-${i}`, MINT, { clientMints: 100 }, T0);
    expect(ledger.clientCount).toBe(200_000);
    expect(await ledger.admit('one-more', MINT, { clientMints: 100 }, T0)).toEqual({ admitted: false, refusal: 'full' });
    expect(await ledger.admit('client-0', MINT, { clientMints: 100 }, T0)).toMatchObject({ admitted: true, client: { mints: 2 } });
  });
});

describe('MemoryLedger: refunds', () => {
  it('a refund that empties a window frees its room; one for an unknown client opens none', async () => {
    const ledger = new MemoryLedger({ capacity: 1 });
    await ledger.admit('a', SECRET, { clientMints: 5 }, T0);
    ledger.record('a', { mints: -1, spendNano: -500_000_000 }, T0);
    ledger.record('ghost', { mints: -1, spendNano: 0 }, T0);
    expect(ledger.clientCount).toBe(0);
    expect(await ledger.admit('b', MINT, { clientMints: 5 }, T0)).toMatchObject({ admitted: true });
  });
});
