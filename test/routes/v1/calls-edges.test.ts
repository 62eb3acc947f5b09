import { describe, expect, it } from 'vitest';
import { expectEnvelope, useFakeOpenAI, type Env } from '../../support/app.js';
import { callIdOf, postSdp, SDP_OFFER } from '../../support/calls.js';
import { waitUntil } from '../../support/wait.js';

const openai = useFakeOpenAI();

const app = (env: Env = {}) => openai.app({ OPENAI_TIMEOUT_MS: '500', ...env }, { random: () => 0 });

describe('a call OpenAI creates after the service stopped waiting (issue 16: the orphan call)', () => {
  it('answers 504 in time, then hangs up the call OpenAI created late, and logs it', async () => {
    const t = await app({ OPENAI_TIMEOUT_MS: '300' });
    // OpenAI creates the call, but only after the service's attempt has timed out.
    openai.fake.scriptCalls({ kind: 'ok', delayMs: 900 });
    const started = performance.now();
    expectEnvelope(await postSdp(t.app), 504);
    expect(performance.now() - started).toBeLessThan(800);
    await waitUntil(() => [...openai.fake.calls.values()].some((call) => call.hungUpAt !== undefined), 'the late call hung up', 5_000);
    const [call] = [...openai.fake.calls.values()];
    expect(openai.fake.hangups.map((hangup) => hangup.callId)).toEqual([call?.callId]);
    expect(t.logs.find('call ended').at(-1)).toMatchObject({ audit: 'call_ended', call_id: call?.callId, reason: 'orphan' });
  });

  it('a slot the late call held is free again: the client can call at once', async () => {
    const t = await app({ OPENAI_TIMEOUT_MS: '300', MAX_CONCURRENT_CALLS_PER_CLIENT: '1' });
    openai.fake.scriptCalls({ kind: 'ok', delayMs: 900 });
    expectEnvelope(await postSdp(t.app), 504);
    expect((await postSdp(t.app)).statusCode).toBe(201);
  });
});

describe('small refusals say the truth (issue 16)', () => {
  it('the concurrency 429 says when to retry (retry_after and Retry-After)', async () => {
    const t = await app({ MAX_CONCURRENT_CALLS_PER_CLIENT: '1' });
    expect((await postSdp(t.app)).statusCode).toBe(201);
    const response = await postSdp(t.app);
    const envelope = expectEnvelope(response, 429);
    expect(envelope.error.retry_after).toBeGreaterThan(0);
    expect(response.headers['retry-after']).toBe(String(envelope.error.retry_after));
  });

  it('a calls body over 128 KiB is refused as over 128 KiB, not "16 KiB"', async () => {
    const t = await app();
    const response = await postSdp(t.app, `${SDP_OFFER}a=x-pad:${'x'.repeat(130 * 1024)}\r\n`);
    const envelope = expectEnvelope(response, 413);
    expect(envelope.error.message).toContain('128 KiB');
    expect(envelope.error.message).not.toContain('16 KiB');
  });

  it('a JSON body over 16 KiB on the token route still says 16 KiB', async () => {
    const t = await app();
    const envelope = expectEnvelope(await t.mint({ sport: 'x'.repeat(17 * 1024) }), 413);
    expect(envelope.error.message).toContain('16 KiB');
  });
});

describe('IPv6 forms that carry an IPv4 client are keyed by that IPv4 (issue 16)', () => {
  it.each([
    ['IPv4-compatible', '::203.0.113.7', '::203.0.113.8'],
    ['NAT64 (64:ff9b::/96)', '64:ff9b::203.0.113.7', '64:ff9b::203.0.113.8'],
  ])('%s: two IPv4 clients get a quota each, and the log names the IPv4', async (_form, first, second) => {
    const t = await app({ RATE_LIMIT_PER_MINUTE: '1' });
    const mint = (remoteAddress: string) => postSdp(t.app, SDP_OFFER, { remoteAddress });
    const one = await mint(first);
    expect(one.statusCode).toBe(201);
    expectEnvelope(await mint(first), 429);
    expect((await mint(second)).statusCode).toBe(201);
    expect(t.logs.find('call started')[0]).toMatchObject({ call_id: callIdOf(one), client: 'ip:203.0.113.7' });
  });

  it('the loopback ::1 and the unspecified :: stay IPv6', async () => {
    const t = await app();
    const response = await postSdp(t.app, SDP_OFFER, { remoteAddress: '::1' });
    expect(response.statusCode).toBe(201);
    expect(t.logs.find('call started')[0]).toMatchObject({ client: 'ip:::/56' });
  });
});
