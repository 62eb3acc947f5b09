import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { expectEnvelope, SITE_ORIGIN, type TestApp } from '../support/app.js';
import { CROSS_REPLICA_BOUND_MS, PRICED_USAGE, startWatchedCall } from '../support/calls.js';
import { requireCommand } from '../support/commands.js';
import type { FakeOpenAI } from '../support/fake-openai.js';
import { closeTwoReplicas, REDIS_BACKENDS, startTwoReplicas, type RedisBackend } from '../support/redis-backends.js';
import { waitUntil } from '../support/wait.js';

requireCommand('redis-server', 'apt-get install redis-server');

const USAGE = PRICED_USAGE;

describe.each(REDIS_BACKENDS)('the usage ledger prices and caps relayed calls across two replicas on one Redis ($name, real time)', (kind) => {
  let redis: RedisBackend;
  let fake: FakeOpenAI;
  let a: TestApp;
  let b: TestApp;

  const watchedCall = (t: TestApp, remoteAddress: string) => startWatchedCall(t.app, fake, remoteAddress);

  // The spend cap on, through the environment only: the call manager's CallSpend is the ledger's.
  beforeAll(async () => {
    ({ redis, fake, a, b } = await startTwoReplicas(kind, { OPENAI_TIMEOUT_MS: '1000', SPEND_PER_CLIENT_PER_DAY_USD: '0.1' }));
  });

  afterAll(() => closeTwoReplicas({ redis, fake, a, b }));

  it('a client\'s calls on both replicas add up; crossing the cap hangs up both, and its next mint is refused naming the spend', async () => {
    const onA = await watchedCall(a, '10.0.0.7');
    const onB = await watchedCall(b, '10.0.0.7');
    const bystander = await watchedCall(a, '10.0.0.8');
    const hungUp = (callId: string) => fake.calls.get(callId)?.hungUpAt !== undefined;

    fake.pushResponseDone(onA, USAGE);
    const spentBy = async (t: TestApp) => (await t.app.spend.report()).clients.find((row) => row.client === 'ip:10.0.0.7')?.spend_usd;
    await waitUntil(async () => (await spentBy(b)) === 0.070816, 'the first response charged, seen from the other replica');
    expect(hungUp(onA) || hungUp(onB)).toBe(false);

    const crossedAt = Date.now();
    fake.pushResponseDone(onB, USAGE);
    await waitUntil(() => hungUp(onA) && hungUp(onB), 'both calls of the client hung up', CROSS_REPLICA_BOUND_MS + 2_000);
    const tookMs = Math.max(...[onA, onB].map((id) => (fake.calls.get(id)?.hungUpAt ?? 0) - crossedAt));
    console.log(`cap crossed on B -> the client's calls on A and B hung up (${kind.name}): ${tookMs} ms`);
    expect(tookMs).toBeLessThan(CROSS_REPLICA_BOUND_MS);
    expect(hungUp(bystander)).toBe(false);
    // Each replica wrote the audit line of the call it held, with that call's own usage.
    for (const [t, id] of [[a, onA], [b, onB]] as const) {
      await waitUntil(() => t.logs.find('call ended').some((line) => line.call_id === id), 'the audit line');
      expect(t.logs.find('call ended').find((line) => line.call_id === id)).toMatchObject({ reason: 'spend', cost_usd: 0.070816, responses: 1 });
    }

    const refused = expectEnvelope(
      await a.app.inject({ method: 'POST', url: '/v1/realtime/token', remoteAddress: '10.0.0.7', headers: { origin: SITE_ORIGIN } }),
      429,
    );
    expect(refused.error.details).toEqual({ limit_usd: 0.1, spent_usd: 0.141632 });
    expect(refused.error.message).toContain('Daily spend cap of $0.10 reached ($0.14 spent)');
    const text = (await b.app.inject({ url: '/metrics' })).body;
    expect(text).toMatch(/^realtime_spend_usd_total\{model="gpt-realtime"\} 0\.070816$/m);
    expect(text).toMatch(/^realtime_spend_limit_usd\{scope="client"\} 0\.1$/m);
  });
});
