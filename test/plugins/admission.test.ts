import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeOpenAI } from '../support/fake-openai.js';
import { buildTestApp, expectEnvelope, type TestApp } from '../support/app.js';
import { waitUntil } from '../support/wait.js';

/** Holds the event loop, as a stuck handler (or a process starved of CPU) would. */
function stall(ms: number): void {
  const until = performance.now() + ms;
  while (performance.now() < until) {
    // stuck
  }
}

describe('admission: a stalled event loop turns new work away', () => {
  let fake: FakeOpenAI;
  let t: TestApp;

  beforeAll(async () => {
    fake = await FakeOpenAI.start();
    // The check is off in other in-process tests (test/support/app.ts); on here. The loop is sampled
    // every 100 ms and judged on its mean delay over each second: a stall of S ms in a second with up
    // to 9 normal samples reads at least (S - 100) / 10 ms, so 1,500 ms clears a 100 ms threshold
    // wherever in the second it falls.
    t = await buildTestApp(fake, {}, { maxEventLoopDelayMs: 100 });
  });

  afterAll(async () => {
    await t.app.close();
    await fake.close();
  });

  /** Whether the app admits new work now (the root route is refused like any other when overloaded). */
  const admits = async () => (await t.app.inject({ method: 'GET', url: '/' })).statusCode !== 503;

  it('after a second the loop spent stuck: 503 with retry_after 5 and no call to OpenAI; /healthz still answers; then it serves again', async () => {
    expect((await t.mint()).statusCode).toBe(200);

    stall(1_500);
    // The verdict comes at the sampler's next tick, or the one after when that tick runs before
    // the stall's sample lands: within two seconds. It then stands for a second.
    await waitUntil(async () => !(await admits()), 'new work turned away after the stall', 3_000);
    const before = fake.mintRequests.length;
    const refused = await t.mint();
    const envelope = expectEnvelope(refused, 503);
    expect(envelope.error.message).toMatch(/overloaded/);
    expect(envelope.error.retry_after).toBe(5);
    expect(refused.headers['retry-after']).toBe('5');
    expect(fake.mintRequests.length).toBe(before);
    // The probe tells rather than refuses.
    expect((await t.app.inject({ method: 'GET', url: '/healthz' })).statusCode).toBe(200);

    // The next second without a stall admits again.
    await waitUntil(admits, 'a calm second to admit new work again', 5_000);
    expect((await t.mint()).statusCode).toBe(200);
  });
});
