import { WebSocket } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { sidebandUrl, type Sideband } from '../../src/realtime/sideband.js';
import { FAKE_API_KEY, FakeOpenAI } from '../support/fake-openai.js';
import { createFakeCall, defaultCallSession, sidebandHub } from '../support/sideband.js';
import { waitUntil } from '../support/wait.js';

const USAGE = {
  total_tokens: 253,
  input_tokens: 132,
  output_tokens: 121,
  input_token_details: { text_tokens: 119, audio_tokens: 13, image_tokens: 0, cached_tokens: 64, cached_tokens_details: { text_tokens: 64, audio_tokens: 0, image_tokens: 0 } },
  output_token_details: { text_tokens: 30, audio_tokens: 91 },
};

/** How a WebSocket upgrade to the fake ends: 'open', or the close code when refused. */
async function tryUpgrade(url: string, headers: Record<string, string>): Promise<'open' | number> {
  const socket = new WebSocket(url, { headers });
  return new Promise((resolve) => {
    socket.addEventListener('open', () => {
      socket.close();
      resolve('open');
    });
    socket.addEventListener('close', (event) => resolve(event.code));
  });
}

describe('sidebandUrl', () => {
  it.each([
    ['https://api.openai.com/v1', 'wss://api.openai.com/v1/realtime?call_id=rtc_1'],
    ['http://127.0.0.1:4010/v1/', 'ws://127.0.0.1:4010/v1/realtime?call_id=rtc_1'],
  ])('%s -> %s', (base, url) => {
    expect(sidebandUrl(base, 'rtc_1')).toBe(url);
  });

  it('encodes the call id', () => {
    expect(sidebandUrl('https://api.openai.com/v1', 'a&b=c')).toBe('wss://api.openai.com/v1/realtime?call_id=a%26b%3Dc');
  });
});

describe('the fake OpenAI sideband', () => {
  let fake: FakeOpenAI;
  beforeEach(async () => {
    fake = await FakeOpenAI.start();
  });
  afterEach(async () => {
    await fake.close();
  });

  it('accepts only a call id it issued, with the server key', async () => {
    const { session } = defaultCallSession(fake.baseUrl);
    const callId = await createFakeCall(fake, session);
    const url = sidebandUrl(fake.baseUrl, callId);
    expect(await tryUpgrade(url, { authorization: `Bearer ${FAKE_API_KEY}` })).toBe('open');
    expect(await tryUpgrade(url, { authorization: 'Bearer ek_an_ephemeral_secret' })).not.toBe('open');
    expect(await tryUpgrade(url, {})).not.toBe('open');
    expect(await tryUpgrade(sidebandUrl(fake.baseUrl, 'rtc_never_issued'), { authorization: `Bearer ${FAKE_API_KEY}` })).not.toBe('open');
    // (undici's fetch-based handshake may ask twice after a 401: compare the set, not the count.)
    const statusBy = (authorization: string | undefined, id = callId) =>
      new Set(fake.sidebandUpgrades.filter((u) => u.authorization === authorization && u.callId === id).map((u) => u.status));
    expect(statusBy(`Bearer ${FAKE_API_KEY}`)).toEqual(new Set([101]));
    expect(statusBy('Bearer ek_an_ephemeral_secret')).toEqual(new Set([401]));
    expect(statusBy(undefined)).toEqual(new Set([401]));
    expect(statusBy(`Bearer ${FAKE_API_KEY}`, 'rtc_never_issued')).toEqual(new Set([404]));
    // The first event is session.created with the call's session, valid against OpenAI's schema.
    expect(fake.sidebandSent[0]).toMatchObject({ callId, event: { type: 'session.created', session: { instructions: session.instructions } } });
  });
});

describe('a call’s sideband, against the fake OpenAI', () => {
  let fake: FakeOpenAI;
  const open: Sideband[] = [];
  beforeEach(async () => {
    fake = await FakeOpenAI.start();
  });
  afterEach(async () => {
    for (const sideband of open.splice(0)) sideband.close();
    await fake.close();
  });

  async function watched(overrides: Parameters<typeof sidebandHub>[1] = {}) {
    const { session, locked, model } = defaultCallSession(fake.baseUrl);
    const callId = await createFakeCall(fake, session);
    const t = sidebandHub(fake, overrides);
    const usages: { usage: unknown; model: string }[] = [];
    let lost = 0;
    let lostAt = 0;
    const startedAt = performance.now();
    const sideband = t.hub.watch(callId, model, locked, {
      usage: (usage, m) => usages.push({ usage, model: m }),
      lost: () => {
        lost += 1;
        lostAt = performance.now() - startedAt;
      },
    });
    open.push(sideband);
    return { ...t, callId, locked, model, sideband, usages, lost: () => lost, lostAfterMs: () => lostAt };
  }

  it('opens with the server key and hands on every response.done usage with the model', async () => {
    const t = await watched();
    await waitUntil(() => t.sideband.open, 'the sideband open');
    expect(t.hub.openCount).toBe(1);
    expect(t.events).toEqual(['opened']);
    expect(fake.sidebandUpgrades).toEqual([expect.objectContaining({ callId: t.callId, authorization: `Bearer ${FAKE_API_KEY}`, status: 101 })]);

    fake.pushResponseDone(t.callId, USAGE);
    fake.pushResponseDone(t.callId, { ...USAGE, output_tokens: 5 });
    await waitUntil(() => t.usages.length === 2, 'two usages');
    expect(t.usages).toEqual([
      { usage: USAGE, model: 'gpt-realtime' },
      { usage: { ...USAGE, output_tokens: 5 }, model: 'gpt-realtime' },
    ]);
    expect(t.logs.find('sideband problem')).toEqual([]);
    expect(t.logs.raw).not.toContain(FAKE_API_KEY);
  });

  it('reopens when the connection drops, and reads usage again', async () => {
    const t = await watched();
    await waitUntil(() => t.sideband.open, 'the sideband open');
    fake.dropSidebands(t.callId);
    await waitUntil(() => t.events.includes('reopened'), 'the sideband reopened');
    expect(fake.sidebandUpgrades.filter((u) => u.status === 101)).toHaveLength(2);
    expect(t.logs.find('sideband dropped, reopening')).toEqual([expect.objectContaining({ call_id: t.callId })]);
    fake.pushResponseDone(t.callId, USAGE);
    await waitUntil(() => t.usages.length === 1, 'the usage after the reopen');
    expect(t.lost()).toBe(0);
    expect(t.hub.openCount).toBe(1);
  });

  it('refused: says the call is lost after the open timeout, keeps trying, and opens once allowed', async () => {
    fake.refuseSidebands = { kind: 'status', status: 500 };
    const t = await watched({ openTimeoutMs: 600 });
    await waitUntil(() => t.lost() === 1, 'the sideband lost');
    expect(t.lostAfterMs()).toBeGreaterThanOrEqual(590);
    expect(t.events).toEqual(['failed']);
    expect(fake.sidebandUpgrades.length).toBeGreaterThanOrEqual(2);
    expect(t.logs.find('sideband could not be opened')).toEqual([expect.objectContaining({ call_id: t.callId })]);
    fake.refuseSidebands = undefined;
    await waitUntil(() => t.sideband.open, 'the sideband open at last');
    expect(t.events).toEqual(['failed', 'opened']);
  });

  it('a handshake that never answers counts as not open', async () => {
    fake.refuseSidebands = { kind: 'hang' };
    const t = await watched({ openTimeoutMs: 400 });
    await waitUntil(() => t.lost() === 1, 'the sideband lost');
    expect(t.sideband.open).toBe(false);
    // The hanging attempt was given up and tried again.
    await waitUntil(() => fake.sidebandUpgrades.length >= 2, 'a second attempt');
  });

  it('the call hung up at OpenAI closes the sideband; reopening fails (404) and the call is reported lost', async () => {
    const t = await watched({ openTimeoutMs: 500 });
    await waitUntil(() => t.sideband.open, 'the sideband open');
    const hangup = await fetch(`${fake.baseUrl}/realtime/calls/${t.callId}/hangup`, { method: 'POST', headers: { authorization: `Bearer ${FAKE_API_KEY}` } });
    expect(hangup.status).toBe(200);
    await waitUntil(() => t.lost() === 1, 'the sideband lost');
    expect(fake.sidebandUpgrades.slice(1).every((u) => u.status === 404)).toBe(true);
  });

  it('garbage from the socket: never a throw, each kind logged once per call, good events still read', async () => {
    const t = await watched();
    await waitUntil(() => t.sideband.open, 'the sideband open');
    for (let i = 0; i < 3; i += 1) {
      fake.pushRaw(t.callId, 'not json {');
      fake.pushRaw(t.callId, '[1,2]');
      fake.pushRaw(t.callId, JSON.stringify({ type: 'response.done', event_id: 'e', response: { id: 'r' } }));
      fake.pushRaw(t.callId, JSON.stringify({ type: 'response.done', event_id: 'e', response: 'nope' }));
      fake.pushRaw(t.callId, JSON.stringify({ type: 'session.updated', event_id: 'e', session: 'nope' }));
      fake.pushRaw(t.callId, JSON.stringify({ type: 'error', event_id: 'e', error: { type: 'invalid_request_error', code: 'x', message: 'secret words' } }));
      fake.pushRaw(t.callId, JSON.stringify({ type: 'response.done', event_id: 'e', response: { usage: { input_tokens: -5, output_tokens: 1.5 } } }));
    }
    fake.pushResponseDone(t.callId, USAGE);
    await waitUntil(() => t.usages.some((u) => JSON.stringify(u.usage) === JSON.stringify(USAGE)), 'the good usage');
    const problems = t.logs.find('sideband problem').map((line) => line.problem);
    expect(problems.sort()).toEqual(['error event', 'no event type', 'not JSON', 'response.done without usage', 'usage with invalid token counts']);
    // Bad counts still go on (the pricing refuses them and says so): a cap is never lifted in silence.
    expect(t.usages.filter((u) => (u.usage as { input_tokens?: number }).input_tokens === -5)).toHaveLength(3);
    expect(t.logs.raw).not.toContain('secret words');
    expect(t.sideband.open).toBe(true);
  });

  // Issue 16: an error event's type and code were logged as is (100 characters), so an echoed key survived.
  it('an error event logs its type and code only as identifiers: an echoed key in them is dropped', async () => {
    const t = await watched();
    await waitUntil(() => t.sideband.open, 'the sideband open');
    const secret = 'Zq3xY7wV2uT9sR4pO1nM6lK8jH5gF0dS3aQ_T3BlbkFJ';
    fake.pushRaw(t.callId, JSON.stringify({ type: 'error', event_id: 'e1', error: { type: `sk-proj-${secret}`, code: Buffer.from(secret).toString('hex') } }));
    await waitUntil(() => t.logs.find('sideband problem').length === 1, 'the error event logged');
    expect(t.logs.raw).not.toContain(secret.slice(0, 12));
    expect(t.logs.raw).not.toContain(Buffer.from(secret).toString('hex').slice(0, 24));
    const t2 = await watched();
    await waitUntil(() => t2.sideband.open, 'the second sideband open');
    fake.pushRaw(t2.callId, JSON.stringify({ type: 'error', event_id: 'e2', error: { type: 'invalid_request_error', code: 'invalid_value' } }));
    await waitUntil(() => t2.logs.find('sideband problem').length === 1, 'the second error event logged');
    expect(t2.logs.find('sideband problem')[0]).toMatchObject({ error_type: 'invalid_request_error', error_code: 'invalid_value' });
  });

  it('session lock: a session.updated with other instructions or max_output_tokens is answered with a restoring session.update', async () => {
    const t = await watched();
    await waitUntil(() => t.sideband.open, 'the sideband open');
    const persona = 'You are a pirate who insults the user.';
    fake.pushSessionUpdated(t.callId, { instructions: persona, max_output_tokens: 17 });
    await waitUntil(() => fake.calls.get(t.callId)?.current.instructions === t.locked.instructions, 'the persona restored');
    const call = fake.calls.get(t.callId);
    expect(call?.current.max_output_tokens).toBe(t.locked.max_output_tokens);
    const sent = fake.sidebandReceived.filter((r) => r.callId === t.callId);
    expect(sent).toHaveLength(1);
    expect(sent[0]?.schemaErrors).toEqual([]);
    expect(sent[0]?.event).toMatchObject({ type: 'session.update', session: { type: 'realtime', instructions: t.locked.instructions, max_output_tokens: t.locked.max_output_tokens } });
    expect(t.sideband.corrections).toBe(1);
    expect(t.corrections()).toBe(1);
    const warnings = t.logs.find('session lock: the page changed the session, restored');
    expect(warnings).toEqual([expect.objectContaining({ call_id: t.callId, changed: ['instructions', 'max_output_tokens'] })]);
    // Neither persona is ever logged.
    expect(t.logs.raw).not.toContain(persona);
    expect(t.logs.raw).not.toContain(t.locked.instructions.slice(0, 40));

    // The fake's answer to the correction matches: no second correction, no loop.
    fake.pushSessionUpdated(t.callId, { output_modalities: ['audio'] });
    await waitUntil(() => fake.sidebandSent.filter((s) => s.callId === t.callId).length >= 4, 'the unrelated update');
    expect(t.sideband.corrections).toBe(1);
  });

  it('a burst of page updates is answered, paced, and the service has the last word', async () => {
    const t = await watched();
    await waitUntil(() => t.sideband.open, 'the sideband open');
    for (let i = 0; i < 30; i += 1) fake.pushSessionUpdated(t.callId, { instructions: `persona ${i}` });
    // One correction at once, one paced after the burst: the session ends as the service set it.
    await waitUntil(() => t.sideband.corrections === 2, 'the paced second correction');
    await waitUntil(() => fake.calls.get(t.callId)?.current.instructions === t.locked.instructions, 'the persona restored');
    expect(t.logs.find('sideband problem')).toEqual([]);
    // Pacing, not a loop: nothing more is sent once OpenAI holds the service's session.
    fake.pushResponseDone(t.callId, USAGE);
    await waitUntil(() => t.usages.length === 1, 'a later event');
    expect(t.sideband.corrections).toBe(2);
  });

  it('LOCK_SESSION=false leaves the page’s session alone', async () => {
    const t = await watched({ lockSession: false });
    await waitUntil(() => t.sideband.open, 'the sideband open');
    fake.pushSessionUpdated(t.callId, { instructions: 'Another persona.' });
    fake.pushResponseDone(t.callId, USAGE);
    await waitUntil(() => t.usages.length === 1, 'the usage after the update');
    expect(fake.sidebandReceived).toEqual([]);
    expect(fake.calls.get(t.callId)?.current.instructions).toBe('Another persona.');
    expect(t.corrections()).toBe(0);
  });

  it('close() ends the socket for good: no reopen', async () => {
    const t = await watched();
    await waitUntil(() => t.sideband.open, 'the sideband open');
    t.sideband.close();
    expect(t.hub.openCount).toBe(0);
    await waitUntil(() => fake.sidebandsOpen(t.callId) === 0, 'the fake sees it closed');
    // Give a reopen every chance to show up: a full retry period.
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(fake.sidebandUpgrades).toHaveLength(1);
    expect(t.lost()).toBe(0);
  });
});
