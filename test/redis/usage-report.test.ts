import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectEnvelope, SITE_ORIGIN, type TestApp } from '../support/app.js';
import { requireCommand } from '../support/commands.js';
import type { FakeOpenAI } from '../support/fake-openai.js';
import { closeTwoReplicas, REDIS_BACKENDS, startTwoReplicas, usageStore, type RedisBackend } from '../support/redis-backends.js';
import { waitUntil } from '../support/wait.js';

requireCommand('redis-server', 'apt-get install redis-server');

describe.each(REDIS_BACKENDS)('usage across two replicas on one Redis: caps, the report, Redis lost ($name)', (kind) => {
  let redis: RedisBackend;
  let fake: FakeOpenAI;
  let a: TestApp;
  let b: TestApp;

  const mint = (t: TestApp, ip: string) =>
    t.app.inject({ method: 'POST', url: '/v1/realtime/token', remoteAddress: ip, headers: { origin: SITE_ORIGIN } });
  const env = { SPEND_PER_CLIENT_PER_DAY_USD: '2', GLOBAL_MINTS_PER_DAY: '1000', RATE_LIMIT_PER_MINUTE: '100', MINTS_PER_CLIENT_PER_DAY: '6' };

  beforeAll(async () => {
    ({ redis, fake, a, b } = await startTwoReplicas(kind, env));
  });

  afterAll(() => closeTwoReplicas({ redis, fake, a, b }));

  it('a client\'s spend adds up across replicas: $2.00 in four secrets, then 429 on either', async () => {
    for (let i = 0; i < 4; i++) expect((await mint(i % 2 === 0 ? a : b, '10.20.0.1')).statusCode).toBe(200);
    expect(expectEnvelope(await mint(a, '10.20.0.1'), 429).error.details).toEqual({ limit_usd: 2, spent_usd: 2 });
    expect(expectEnvelope(await mint(b, '10.20.0.1'), 429).error.message).toContain('Daily spend cap of $2.00 reached ($2.00 spent)');
  });

  it('report(): the same windows, top clients and hourly history from either replica', async () => {
    await mint(a, '10.20.0.2');
    await mint(b, '10.20.0.3');
    await mint(b, '10.20.0.3');
    // each replica hands Redis the counts of limits that are off (here the global window) every 2 s
    await a.app.spend.flush();
    await b.app.spend.flush();
    const fromA = await a.app.spend.report();
    const fromB = await b.app.spend.report();
    expect(fromA.store).toBe('redis');
    expect(fromA.global).toMatchObject({ mints: 7, spend_usd: 3.5, mints_limit: 1000, spend_limit_usd: null });
    expect(fromA.clients.map((row) => [row.client, row.mints, row.spend_usd])).toEqual([
      ['ip:10.20.0.1', 4, 2],
      ['ip:10.20.0.3', 2, 1],
      ['ip:10.20.0.2', 1, 0.5],
    ]);
    const rows = (report: typeof fromA) => report.clients.map(({ client, mints, spend_usd }) => ({ client, mints, spend_usd }));
    expect(rows(fromB)).toEqual(rows(fromA));
    const now = fromA.hourly.at(-1);
    expect(now).toMatchObject({ mints: 7, spend_usd: 3.5, refusals: { spend: 2 } });
    expect(fromB.hourly).toEqual(fromA.hourly);
    expect(fromA.hourly).toHaveLength(24);
  });

  it('Redis killed mid-count: each replica counts locally from the last totals (/healthz says so), no cap lifted; Redis restarted empty gets the counts back', async () => {
    await redis.stop();
    await waitUntil(async () => (await usageStore(a)) === 'fallback', 'replica a counting locally');
    // spent before the loss: still refused, on the replica that saw it
    expectEnvelope(await mint(a, '10.20.0.1'), 429);
    // a quarter spent before the loss (on this replica): three more secrets, then the cap holds
    for (let i = 0; i < 3; i++) expect((await mint(a, '10.20.0.2')).statusCode).toBe(200);
    expect(expectEnvelope(await mint(a, '10.20.0.2'), 429).error.details).toEqual({ limit_usd: 2, spent_usd: 2 });
    // the worst case: a client only the other replica saw starts from zero here, and is still capped
    for (let i = 0; i < 4; i++) expect((await mint(a, '10.20.0.3')).statusCode).toBe(200);
    expectEnvelope(await mint(a, '10.20.0.3'), 429);
    expect((await a.app.spend.report()).store).toBe('fallback');

    await redis.resume();
    await waitUntil(async () => (await usageStore(a)) === 'redis' && (await usageStore(b)) === 'redis', 'both replicas back on Redis');
    await a.app.spend.flush();
    // replica b never saw the outage's mints: it refuses from Redis
    for (const ip of ['10.20.0.1', '10.20.0.2', '10.20.0.3']) expectEnvelope(await mint(b, ip), 429);
    const spent = new Map((await b.app.spend.report()).clients.map((row) => [row.client, row.spend_usd]));
    expect(spent.get('ip:10.20.0.1')).toBe(2);
    expect(spent.get('ip:10.20.0.2')).toBe(2);
    // $1 counted by b before the loss, $2 by a during it: each replica hands over at least what it knew
    // (the order of their merges decides whether Redis gets $2 or the whole $3)
    expect(spent.get('ip:10.20.0.3')).toBeGreaterThanOrEqual(2);
  });
});
