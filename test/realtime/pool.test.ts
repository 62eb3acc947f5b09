import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { OpenAIClient } from '../../src/openai/client.js';
import { UpstreamTransport } from '../../src/openai/transport.js';
import { SecretPool } from '../../src/realtime/secret-pool.js';
import { FAKE_API_KEY } from '../support/fake-openai.js';
import { expectEnvelope, ManualClock, useFakeOpenAI, type TestApp } from '../support/app.js';
import { waitUntil } from '../support/wait.js';

const openai = useFakeOpenAI();
let t: TestApp;

interface PoolStats {
  size: number;
  capacity: number;
  hits: number;
  misses: number;
  expired: number;
}

const poolStats = async () => (await t.app.inject({ method: 'GET', url: '/' })).json<{ token_pool: PoolStats }>().token_pool;
const secretOf = (response: { json: <T>() => T }) => response.json<{ client_secret: string }>().client_secret;

describe('warm secret pool (TOKEN_POOL_SIZE): the default session', () => {
  it('fills at start, serves the default session from it, and refills', async () => {
    t = await openai.app({ TOKEN_POOL_SIZE: '3', TOKEN_POOL_REFILL_PER_SECOND: '100' });
    await waitUntil(async () => (await poolStats()).size === 3, 'pool full');
    expect(openai.fake.mintRequests).toHaveLength(3);

    const hit = await t.mint({});
    expect(hit.statusCode).toBe(200);
    expect(hit.headers['cache-control']).toBe('no-store');
    expect(t.logs.find('client secret minted').at(-1)).toMatchObject({ source: 'pool', upstream_ms: 0 });
    await waitUntil(async () => (await poolStats()).size === 3, 'pool refilled');
    expect(openai.fake.mintRequests).toHaveLength(4);
    expect(await poolStats()).toMatchObject({ hits: 1, misses: 0, capacity: 3 });
    const metrics = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toMatch(/^token_pool_size 3$/m);
    expect(metrics).toMatch(/^token_pool_requests_total\{result="hit"\} 1$/m);
    expect(metrics).toMatch(/^token_pool_requests_total\{result="miss"\} 0$/m);
    // a pooled secret was minted with the exact default session body
    expect(openai.fake.mintRequests.every((r) => r.schemaErrors.length === 0)).toBe(true);
  });

  it('never mints faster than TOKEN_POOL_REFILL_PER_SECOND', async () => {
    t = await openai.app({ TOKEN_POOL_SIZE: '4', TOKEN_POOL_REFILL_PER_SECOND: '10' });
    await waitUntil(async () => (await poolStats()).size === 4, 'pool full');
    // Launches are 100 ms apart; arrival times at the fake jitter by a few ms, so judge the span.
    const times = openai.fake.mintRequests.map((r) => r.at);
    expect(times).toHaveLength(4);
    expect(times[3]! - times[0]!).toBeGreaterThanOrEqual(270);
  });

  it('hands each secret to exactly one client, even under concurrency', async () => {
    t = await openai.app({ TOKEN_POOL_SIZE: '4', TOKEN_POOL_REFILL_PER_SECOND: '100', RATE_LIMIT_PER_MINUTE: '100' });
    await waitUntil(async () => (await poolStats()).size === 4, 'pool full');
    const responses = await Promise.all(Array.from({ length: 12 }, () => t.mint({})));
    const secrets = responses.map(secretOf);
    expect(new Set(secrets).size).toBe(12);
    const stats = await poolStats();
    expect(stats.hits).toBe(4);
    expect(stats.misses).toBe(8);
  });

  it('mints other configurations directly', async () => {
    t = await openai.app({ TOKEN_POOL_SIZE: '2', TOKEN_POOL_REFILL_PER_SECOND: '100' });
    await waitUntil(async () => (await poolStats()).size === 2, 'pool full');
    const custom = await t.mint({ voice: 'marin' });
    expect(custom.statusCode).toBe(200);
    expect(t.logs.find('client secret minted').at(-1)).toMatchObject({ source: 'upstream', voice: 'marin' });
    expect((await poolStats()).size).toBe(2);
    const explicitDefaults = await t.mint({ model: 'gpt-realtime', voice: 'verse', difficulty: 'easy' });
    expect(explicitDefaults.statusCode).toBe(200);
    expect(t.logs.find('client secret minted').at(-1)).toMatchObject({ source: 'pool' });
  });

  it('drops secrets with less than TOKEN_POOL_MIN_REMAINING_SECONDS left', async () => {
    const clock = new ManualClock();
    t = await openai.app({ TOKEN_POOL_SIZE: '2', TOKEN_POOL_REFILL_PER_SECOND: '100' }, { now: clock.now });
    await waitUntil(async () => (await poolStats()).size === 2, 'pool full');
    const pooled = new Set(openai.fake.mintRequests.map((r) => r.at));
    expect(pooled.size).toBe(2);
    // 600 s TTL, 120 s minimum: after 481 s every pooled secret is stale
    clock.advance(481_000);
    const response = await t.mint({});
    expect(response.statusCode).toBe(200);
    expect(t.logs.find('client secret minted').at(-1)).toMatchObject({ source: 'upstream' });
    expect((await poolStats()).expired).toBe(2);
  });

  it('respects the breaker: no refill while it is open', async () => {
    t = await openai.app({
      TOKEN_POOL_SIZE: '2',
      TOKEN_POOL_REFILL_PER_SECOND: '100',
      CIRCUIT_BREAKER_THRESHOLD: '1',
      CIRCUIT_BREAKER_COOLDOWN_MS: '60000',
      OPENAI_MAX_RETRIES: '0',
    });
    await waitUntil(async () => (await poolStats()).size === 2, 'pool full');
    openai.fake.script({ kind: 'status', status: 500 }, { kind: 'status', status: 500 }, { kind: 'status', status: 500 });
    expectEnvelope(await t.mint({ voice: 'ash' }), 503);
    const callsWhenOpen = openai.fake.mintRequests.length;
    // the pool still serves what it holds
    expect((await t.mint({})).statusCode).toBe(200);
    expect((await t.mint({})).statusCode).toBe(200);
    expectEnvelope(await t.mint({}), 503);
    // Nothing to await: this proves an absence. 800 ms is past the next paced refill (>= 2/s).
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(openai.fake.mintRequests.length).toBe(callsWhenOpen);
    // The breaker alone keeps refills from OpenAI; the pool does not even try while it is open.
    expect(t.logs.find('token pool: refill failed; backing off')).toHaveLength(0);
  });

  it('respects the global budget: no refill once it is spent', async () => {
    t = await openai.app({ TOKEN_POOL_SIZE: '2', TOKEN_POOL_REFILL_PER_SECOND: '100', GLOBAL_MINTS_PER_MINUTE: '2' });
    await waitUntil(async () => (await poolStats()).size === 2, 'pool full');
    // one of two: the budget still has room, so the pool refills
    expect((await t.mint({})).statusCode).toBe(200);
    await waitUntil(async () => (await poolStats()).size === 2, 'pool refilled');
    // two of two: spent, so the secret handed out is not replaced
    expect((await t.mint({})).statusCode).toBe(200);
    const callsWhenSpent = openai.fake.mintRequests.length;
    expectEnvelope(await t.mint({}), 503);
    // Nothing to await: this proves an absence. Refills start at least 2/s before the drain is
    // known, so 800 ms is past the next one (without the budget gate this test sees it).
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(openai.fake.mintRequests.length).toBe(callsWhenSpent);
    expect((await poolStats()).size).toBe(1);
  });

  it('close() discards the pooled secrets and stops refilling', async () => {
    // The pool on its own, minting through a real client: at app level the closed client would hide it.
    const transport = new UpstreamTransport({ baseUrl: openai.fake.baseUrl, apiKey: FAKE_API_KEY, timeoutMs: 2000, maxRetries: 0 });
    const client = new OpenAIClient(transport);
    const pool = new SecretPool({
      size: 2,
      minRemainingSeconds: 120,
      ttlSeconds: 600,
      refillPerSecond: 2,
      mint: () => client.createClientSecret(JSON.stringify({ session: { type: 'realtime' } }), { log: pino({ level: 'silent' }) }),
      upstreamWaitMs: () => 0,
      log: pino({ level: 'silent' }),
      seed: { key: 'default', config: undefined },
    });
    pool.start();
    await waitUntil(() => pool.stats.size === 2, 'pool full');
    expect(pool.take('default', undefined)).toBeDefined(); // a refill is now due within 500 ms
    pool.close();
    expect(pool.stats.size).toBe(0);
    const minted = openai.fake.mintRequests.length;
    // Nothing to await: this proves an absence, so wait past the refill's due time.
    await new Promise((resolve) => setTimeout(resolve, 700));
    expect(openai.fake.mintRequests.length).toBe(minted);
    await transport.close();
  });
});

/** The sport a recorded mint request was for, from the persona sent to OpenAI ('' for none). */
function sportOf(request: { body: unknown }): string {
  const instructions = (request.body as { session: { instructions: string } }).session.instructions;
  return /The user is watching: (.+)\./.exec(instructions)?.[1] ?? '';
}

const metricsText = async () => (await t.app.inject({ method: 'GET', url: '/metrics' })).body;

describe('warm secret pool: following demand', () => {
  const nba = { difficulty: 'savage', sport: 'nba' } as const;
  const nfl = { difficulty: 'expert', sport: 'nfl' } as const;

  it('warms the configurations clients ask for, never a one-off or free-text instructions', async () => {
    t = await openai.app({ TOKEN_POOL_SIZE: '6', TOKEN_POOL_REFILL_PER_SECOND: '100', RATE_LIMIT_PER_MINUTE: '100' });
    // at boot: the default session only (capped at what one half-life of it would use)
    await waitUntil(async () => (await poolStats()).size === 4, 'default session warm');
    for (let i = 0; i < 3; i++) {
      expect((await t.mint(nba)).statusCode).toBe(200);
      expect((await t.mint(nfl)).statusCode).toBe(200);
      expect((await t.mint({ ...nba, instructions: 'Call me coach.' })).statusCode).toBe(200);
    }
    expect((await t.mint({ sport: 'curling', voice: 'marin' })).statusCode).toBe(200);
    const sizeOf = async (configuration: string) =>
      Number(
        new RegExp(`^token_pool_configuration_size\\{configuration="${configuration.replaceAll('|', '\\|')}"\\} (\\d+)$`, 'm').exec(
          await metricsText(),
        )?.[1] ?? 0,
      );
    await waitUntil(
      async () => (await sizeOf('gpt-realtime|verse|savage|nba')) > 0 && (await sizeOf('gpt-realtime|verse|expert|nfl')) > 0,
      'nba and nfl warm',
    );
    // curling was asked once and free text is never pooled: each was minted exactly as often as asked
    const bySport = (sport: string) => openai.fake.mintRequests.filter((r) => sportOf(r) === sport);
    expect(bySport('curling')).toHaveLength(1);
    const withInstructions = openai.fake.mintRequests.filter((r) =>
      (r.body as { session: { instructions: string } }).session.instructions.includes('Call me coach.'),
    );
    expect(withInstructions).toHaveLength(3);
    expect((await poolStats()).size).toBeLessThanOrEqual(6);

    const warm = await t.mint(nba);
    expect(warm.statusCode).toBe(200);
    expect(t.logs.find('client secret minted').at(-1)).toMatchObject({ source: 'pool', difficulty: 'savage' });
    expect(warm.json<{ instructions: string }>().instructions).toContain('The user is watching: nba.');
    const metrics = await metricsText();
    expect(metrics).toMatch(/^token_pool_configuration_requests_total\{configuration="gpt-realtime\|verse\|savage\|nba",result="hit"\} 1$/m);
    expect(metrics).toMatch(/^token_pool_wasted_total\{configuration="other"\} 0$/m);
  });

  it('50 concurrent requests over three configurations never share a secret', async () => {
    t = await openai.app({ TOKEN_POOL_SIZE: '12', TOKEN_POOL_REFILL_PER_SECOND: '100', RATE_LIMIT_PER_MINUTE: '1000' });
    const configurations = [{}, nba, nfl];
    for (let i = 0; i < 4; i++) for (const body of configurations) await t.mint(body);
    await waitUntil(async () => {
      const metrics = await metricsText();
      return ['easy|', 'savage|nba', 'expert|nfl'].every((tail) =>
        new RegExp(`^token_pool_configuration_size\\{configuration="gpt-realtime\\|verse\\|${tail.replace('|', '\\|')}"\\} [1-9]`, 'm').test(metrics),
      );
    }, 'three configurations warm');
    const before = await poolStats();
    const responses = await Promise.all(Array.from({ length: 50 }, (_, i) => t.mint(configurations[i % 3])));
    expect(responses.every((r) => r.statusCode === 200)).toBe(true);
    const secrets = responses.map(secretOf);
    expect(new Set(secrets).size).toBe(50);
    const after = await poolStats();
    expect(after.hits - before.hits).toBeGreaterThanOrEqual(3);
    expect(after.hits - before.hits + after.misses - before.misses).toBe(50);
  });

  it('does not refill any configuration while the breaker is open', async () => {
    t = await openai.app({
      TOKEN_POOL_SIZE: '4',
      TOKEN_POOL_REFILL_PER_SECOND: '100',
      CIRCUIT_BREAKER_THRESHOLD: '1',
      CIRCUIT_BREAKER_COOLDOWN_MS: '60000',
      OPENAI_MAX_RETRIES: '0',
      RATE_LIMIT_PER_MINUTE: '100',
    });
    await waitUntil(async () => (await poolStats()).size === 4, 'default session warm');
    openai.fake.script({ kind: 'status', status: 500 });
    // nba's first request trips the breaker; the next two are refused fast, but still count as demand
    expectEnvelope(await t.mint(nba), 503);
    expectEnvelope(await t.mint(nba), 503);
    expectEnvelope(await t.mint(nba), 503);
    const callsWhenOpen = openai.fake.mintRequests.length;
    expect((await t.mint({})).statusCode).toBe(200);
    // Nothing to await: this proves an absence. 800 ms is past the next paced refill (>= 2/s).
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(openai.fake.mintRequests.length).toBe(callsWhenOpen);
    expect(openai.fake.mintRequests.filter((r) => sportOf(r) === 'nba')).toHaveLength(1);
    expect(t.logs.find('token pool: refill failed; backing off')).toHaveLength(0);
  });
});

describe('warm secret pool: a miss while a refill is in flight', () => {
  it('takes that refill instead of minting again, and no one else gets it', async () => {
    t = await openai.app({ TOKEN_POOL_SIZE: '1', TOKEN_POOL_REFILL_PER_SECOND: '100', RATE_LIMIT_PER_MINUTE: '100' });
    await waitUntil(async () => (await poolStats()).size === 1, 'pool full');
    openai.fake.latencyMs = 300;
    const arrived = openai.fake.arrived;
    const first = await t.mint({});
    // the refill that take started is now at OpenAI, for 300 ms
    await waitUntil(() => openai.fake.arrived === arrived + 1, 'refill in flight');
    const second = await t.mint({});
    expect(second.statusCode).toBe(200);
    expect(new Set([secretOf(first), secretOf(second)]).size).toBe(2);
    const sources = t.logs.find('client secret minted').map((line) => line.source);
    expect(sources).toEqual(['pool', 'pool']);
    expect((await poolStats()).misses).toBe(1);
    // one secret at boot, the refill the second request took, and the refill that replaces it
    await waitUntil(async () => (await poolStats()).size === 1, 'pool refilled');
    expect(openai.fake.mintRequests).toHaveLength(3);
  });
});

describe('warm upstream connection', () => {
  it('opens a connection to OpenAI at start, which the first mint reuses', async () => {
    t = await openai.app();
    // the readiness check at boot (with the key) opens the connection
    await waitUntil(() => openai.fake.connections === 1 && openai.fake.answered === 1, 'boot check answered');
    expect(openai.fake.readinessChecks).toBe(1);
    expect((await t.mint({})).statusCode).toBe(200);
    expect(openai.fake.connections).toBe(1);
  });
});
