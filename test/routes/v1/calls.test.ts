import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import { resolveChoice } from '../../../src/realtime/choices.js';
import { buildInstructions, buildSession } from '../../../src/realtime/session.js';
import { CANNED_SDP_ANSWER, FakeOpenAI, FAKE_API_KEY, type Behaviour } from '../../support/fake-openai.js';
import { expectEnvelope, ManualClock, SITE_ORIGIN, useFakeOpenAI, type Env, type TestApp } from '../../support/app.js';
import { callIdOf, endCall, postMultipart, postSdp, SDP_OFFER } from '../../support/calls.js';
import { turn, waitUntil } from '../../support/wait.js';

const openai = useFakeOpenAI();
/** What the Agents SDK sends in a browser: an ek_ string as bearer; with auth off it means nothing. */
const SDK_HEADERS = { authorization: 'Bearer ek_page_held_nothing_0123456789', 'x-openai-agents-sdk': 'openai-agents-sdk.realtime/0.20.0' };

function app(env: Env = {}, clock?: ManualClock): Promise<TestApp> {
  return openai.app({ OPENAI_TIMEOUT_MS: '500', ...env }, { random: () => 0, ...(clock ? { now: clock.now } : {}) });
}

const status = (code: number): Behaviour => ({ kind: 'status', status: code });

afterEach(() => {
  for (const t of openai.apps) {
    expect(t.logs.raw).not.toContain(FAKE_API_KEY);
    expect(t.logs.raw).not.toContain('ek_page_held_nothing');
    expect(t.logs.raw).not.toMatch(/authorization/i);
  }
});

describe('POST /v1/realtime/calls', () => {
  it('relays an application/sdp offer: 201, the SDP answer, Location and X-Call-Ends-At; the session from the one builder', async () => {
    const t = await app();
    const before = Math.floor(Date.now() / 1000);
    const response = await postSdp(t.app, SDP_OFFER, { query: 'voice=cedar&difficulty=savage&sport=nba', headers: SDK_HEADERS });
    expect(response.statusCode).toBe(201);
    expect(response.headers['content-type']).toMatch(/^application\/sdp/);
    expect(response.body).toBe(CANNED_SDP_ANSWER);
    expect(response.headers.location).toMatch(/^\/v1\/realtime\/calls\/rtc_fake\w+$/);
    const endsAt = Number(response.headers['x-call-ends-at']);
    expect(endsAt).toBeGreaterThanOrEqual(before + 1800);
    expect(endsAt).toBeLessThanOrEqual(Math.ceil(Date.now() / 1000) + 1800);

    const [request] = openai.fake.callRequests;
    expect(request?.schemaErrors).toEqual([]);
    const choice = resolveChoice(t.config, { voice: 'cedar', difficulty: 'savage', sport: 'nba' });
    expect(request?.body).toEqual({ sdp: SDP_OFFER, session: buildSession(t.config, choice, buildInstructions(t.config, choice)) });
    // the page's bearer went nowhere: OpenAI saw the server key (else the fake would have said 401)
    expect(request?.headers.authorization).toBe(`Bearer ${FAKE_API_KEY}`);
    expect(openai.fake.calls.has(callIdOf(response))).toBe(true);
    // the Agents SDK reads the call id from Location: a page can only if CORS exposes it
    expect(response.headers['access-control-expose-headers']).toMatch(/Location.*X-Call-Ends-At/);

    const started = t.logs.find('call started');
    expect(started).toHaveLength(1);
    expect(started[0]).toMatchObject({
      audit: 'call_started',
      call_id: callIdOf(response),
      client: 'ip:127.0.0.1',
      origin: SITE_ORIGIN,
      model: 'gpt-realtime',
      voice: 'cedar',
      difficulty: 'savage',
      ends_at: endsAt,
    });
  });

  it('relays a multipart/form-data body: parts sdp and options (the token route body)', async () => {
    const t = await app();
    const options = { voice: 'marin', instructions: 'Mention the weather.', difficulty: 'expert' } as const;
    const response = await postMultipart(t.app, { sdp: SDP_OFFER, options: JSON.stringify(options) });
    expect(response.statusCode).toBe(201);
    const [request] = openai.fake.callRequests;
    expect(request?.schemaErrors).toEqual([]);
    const choice = resolveChoice(t.config, options);
    expect((request?.body as { session: unknown }).session).toEqual(buildSession(t.config, choice, buildInstructions(t.config, choice)));
  });

  it('takes the offer as a file part too (a Blob in the page’s FormData)', async () => {
    const t = await app();
    const response = await postMultipart(t.app, { sdp: new Blob([SDP_OFFER], { type: 'application/sdp' }) });
    expect(response.statusCode).toBe(201);
    expect((openai.fake.callRequests[0]?.body as { sdp: string }).sdp).toBe(SDP_OFFER);
  });

  it.each([
    ['an empty body', () => postSdp, '', 400],
    ['garbage instead of SDP', () => postSdp, 'hello there', 400],
    ['an offer over 32 KiB', () => postSdp, `${SDP_OFFER}a=x:${'y'.repeat(33 * 1024)}\r\n`, 413],
  ] as const)('refuses %s before OpenAI', async (_name, _post, sdp, code) => {
    const t = await app();
    expectEnvelope(await postSdp(t.app, sdp), code);
    expect(openai.fake.callRequests).toHaveLength(0);
  });

  it('refuses other content types with 415 (JSON too), before OpenAI', async () => {
    const t = await app();
    for (const type of ['text/plain', 'application/json']) {
      const response = await t.app.inject({
        method: 'POST',
        url: '/v1/realtime/calls',
        headers: { origin: SITE_ORIGIN, 'content-type': type },
        payload: type === 'text/plain' ? SDP_OFFER : JSON.stringify({ sdp: SDP_OFFER }),
      });
      expect(expectEnvelope(response, 415).error.message).toContain('application/sdp');
    }
    expect(openai.fake.callRequests).toHaveLength(0);
  });

  it('validates the choices with the token route’s schema: 422 for a bad query or options part, 400 for options that are not JSON', async () => {
    const t = await app();
    const badVoice = expectEnvelope(await postSdp(t.app, SDP_OFFER, { query: 'voice=robot' }), 422);
    expect(JSON.stringify(badVoice.error.details)).toContain('voice');
    expectEnvelope(await postSdp(t.app, SDP_OFFER, { query: 'colour=red' }), 422);
    const badOption = expectEnvelope(await postMultipart(t.app, { sdp: SDP_OFFER, options: '{"difficulty":"mean"}' }), 422);
    expect(badOption.error.details).toMatchObject({ fields: [{ path: 'difficulty' }] });
    expectEnvelope(await postMultipart(t.app, { sdp: SDP_OFFER, options: '{not json' }), 400);
    expectEnvelope(await postMultipart(t.app, { options: '{}' }), 400);
    expectEnvelope(await postMultipart(t.app, { sdp: 'not an offer' }), 400);
    expect(openai.fake.callRequests).toHaveLength(0);
  });

  it('takes the guards of the token route: a foreign Origin is refused and never reaches OpenAI', async () => {
    const t = await app();
    expectEnvelope(await postSdp(t.app, SDP_OFFER, { headers: { origin: 'https://evil.example' } }), 403);
    expect(openai.fake.callRequests).toHaveLength(0);
  });

  it('a call counts as a mint for the rate limit', async () => {
    const t = await app({ RATE_LIMIT_PER_MINUTE: '2', MAX_CONCURRENT_CALLS_PER_CLIENT: '5' });
    expect((await t.mint()).statusCode).toBe(200);
    expect((await postSdp(t.app)).statusCode).toBe(201);
    expectEnvelope(await postSdp(t.app), 429);
    expectEnvelope(await t.mint(), 429);
    expect(openai.fake.callRequests).toHaveLength(1);
  });
});

describe('hostile bodies', () => {
  it('any bytes as application/sdp or multipart, any query: an envelope below 500, and only an SDP reaches OpenAI', async () => {
    const t = await app({ RATE_LIMIT_PER_MINUTE: '1000000', MAX_CONCURRENT_CALLS_PER_CLIENT: '1000' });
    const boundary = 'xyz';
    await fc.assert(
      fc.asyncProperty(
        fc.uint8Array({ maxLength: 600 }),
        fc.constantFrom('application/sdp', `multipart/form-data; boundary=${boundary}`, 'multipart/form-data', 'application/sdp; charset=latin1'),
        fc.string({ maxLength: 40 }),
        async (bytes, contentType, query) => {
          const response = await t.app.inject({
            method: 'POST',
            url: `/v1/realtime/calls?${encodeURIComponent(query)}=${encodeURIComponent(query)}`,
            headers: { origin: SITE_ORIGIN, 'content-type': contentType },
            payload: Buffer.from(bytes),
          });
          await turn();
          if (response.statusCode !== 201) expectEnvelope(response, response.statusCode);
          expect(response.statusCode).toBeLessThan(500);
        },
      ),
      { numRuns: 200 },
    );
    for (const request of openai.fake.callRequests) expect((request.body as { sdp: string }).sdp.startsWith('v=')).toBe(true);
  });
});

describe('concurrency and DELETE', () => {
  it('MAX_CONCURRENT_CALLS_PER_CLIENT: the next call is 429 (concurrency) until the owner ends one', async () => {
    const t = await app({ MAX_CONCURRENT_CALLS_PER_CLIENT: '1' });
    const first = await postSdp(t.app);
    expect(first.statusCode).toBe(201);
    const refused = expectEnvelope(await postSdp(t.app), 429);
    expect(refused.error.details).toEqual({ limit: 1 });
    expect(t.logs.find('request refused').map((line) => line.refusal)).toContain('concurrency');
    // another client has its own slots
    expect((await postSdp(t.app, SDP_OFFER, { remoteAddress: '198.51.100.7' })).statusCode).toBe(201);

    const ended = await endCall(t.app, String(first.headers.location));
    expect(ended.statusCode).toBe(204);
    expect(openai.fake.hangups).toEqual([expect.objectContaining({ callId: callIdOf(first), status: 200 })]);
    expect(t.logs.find('call ended')[0]).toMatchObject({ call_id: callIdOf(first), client: 'ip:127.0.0.1', reason: 'delete' });
    expect((await postSdp(t.app)).statusCode).toBe(201);
    expect(openai.fake.callRequests).toHaveLength(3);
  });

  it('DELETE of another client’s call or an unknown id is 404 and hangs nothing up', async () => {
    const t = await app();
    const call = await postSdp(t.app);
    expectEnvelope(await endCall(t.app, String(call.headers.location), '198.51.100.9'), 404);
    expectEnvelope(await endCall(t.app, '/v1/realtime/calls/rtc_nosuchcall'), 404);
    expectEnvelope(await endCall(t.app, '/v1/realtime/calls/..%2F..%2Fadmin'), 404);
    expect(openai.fake.hangups).toEqual([]);
    const foreign = await t.app.inject({ method: 'DELETE', url: String(call.headers.location), headers: { origin: 'https://evil.example' } });
    expectEnvelope(foreign, 403);
  });

  it('counts active calls and ended calls by reason in /metrics', async () => {
    const t = await app();
    const call = await postSdp(t.app);
    await postSdp(t.app);
    expect((await t.app.inject({ url: '/metrics' })).body).toMatch(/^realtime_calls_active 2$/m);
    await endCall(t.app, String(call.headers.location));
    const metrics = (await t.app.inject({ url: '/metrics' })).body;
    expect(metrics).toMatch(/^realtime_calls_active 1$/m);
    expect(metrics).toMatch(/^realtime_calls_ended_total\{reason="delete"\} 1$/m);
    expect(metrics).toMatch(/^realtime_calls_started_total\{model="gpt-realtime",outcome="started"\} 2$/m);
  });
});

describe('upstream failures', () => {
  it.each([
    [401, 502],
    [400, 502],
  ])('OpenAI %i -> %i, not retried, slot given back', async (upstream, code) => {
    const t = await app({ MAX_CONCURRENT_CALLS_PER_CLIENT: '1' });
    openai.fake.scriptCalls(status(upstream));
    expectEnvelope(await postSdp(t.app), code);
    expect(openai.fake.callRequests).toHaveLength(1);
    expect((await postSdp(t.app)).statusCode).toBe(201);
  });

  it('a 5xx is NOT retried (OpenAI may have created the call): 503 after one attempt', async () => {
    const t = await app();
    openai.fake.scriptCalls(status(500), status(500));
    expect(expectEnvelope(await postSdp(t.app), 503).error.retry_after).toBeGreaterThan(0);
    expect(openai.fake.callRequests).toHaveLength(1);
  });

  it('a timeout waiting for the answer is NOT retried: 504 after one attempt', async () => {
    const t = await app({ OPENAI_TIMEOUT_MS: '300' });
    openai.fake.scriptCalls({ kind: 'hang' });
    expectEnvelope(await postSdp(t.app), 504);
    expect(openai.fake.callRequests).toHaveLength(1);
  });

  it('a 429 is retried (OpenAI created nothing) and then succeeds', async () => {
    const t = await app();
    openai.fake.scriptCalls(status(429));
    expect((await postSdp(t.app)).statusCode).toBe(201);
    expect(openai.fake.callRequests).toHaveLength(2);
  });

  it('a refused connection is retried (the request never left), then 503', async () => {
    const closed = await FakeOpenAI.start();
    const baseUrl = closed.baseUrl;
    await closed.close();
    const t = await app({ OPENAI_BASE_URL: baseUrl, OPENAI_MAX_RETRIES: '2' });
    expectEnvelope(await postSdp(t.app), 503);
    const attempts = t.logs.find('OpenAI call failed');
    expect(attempts.map((line) => line.upstream_kind)).toEqual(['unreachable', 'unreachable', 'unreachable']);
  });

  it('a 2xx without Location is unusable: 502', async () => {
    const t = await app();
    openai.fake.scriptCalls({ kind: 'raw', status: 201, body: 'v=0\r\n', contentType: 'application/sdp' });
    expectEnvelope(await postSdp(t.app), 502);
  });
});

describe('hard end (in-process deadlines, injected clock)', () => {
  it('hangs the call up once MAX_CALL_SECONDS have passed, frees the slot, logs and counts it', async () => {
    const clock = new ManualClock();
    const t = await app({ MAX_CALL_SECONDS: '10', MAX_CONCURRENT_CALLS_PER_CLIENT: '1' }, clock);
    const call = await postSdp(t.app);
    expect(Number(call.headers['x-call-ends-at'])).toBe(Math.floor((clock.now() + 10_000) / 1000));
    clock.advance(9_900);
    await t.app.calls.hangUpDue();
    expect(openai.fake.hangups).toEqual([]);
    expectEnvelope(await postSdp(t.app), 429);

    clock.advance(200);
    await t.app.calls.hangUpDue();
    await waitUntil(() => openai.fake.hangups.length === 1 && t.logs.find('call ended').length === 1, 'the deadline hangup');
    expect(openai.fake.hangups[0]).toMatchObject({ callId: callIdOf(call), status: 200 });
    expect(t.logs.find('call ended')[0]).toMatchObject({ call_id: callIdOf(call), reason: 'deadline', duration_s: 10.1 });
    expect((await t.app.inject({ url: '/metrics' })).body).toMatch(/^realtime_calls_ended_total\{reason="deadline"\} 1$/m);
    expect((await postSdp(t.app)).statusCode).toBe(201);
  });

  it('a failed hangup is retried later; a 404 means already over', async () => {
    const clock = new ManualClock();
    const t = await app({ MAX_CALL_SECONDS: '10' }, clock);
    const call = await postSdp(t.app);
    // 1 + OPENAI_MAX_RETRIES attempts fail, so the hangup is rescheduled
    openai.fake.scriptHangups(status(500), status(500), status(500));
    clock.advance(10_000);
    await t.app.calls.hangUpDue();
    await waitUntil(() => openai.fake.hangups.length === 3, 'three failed attempts');
    expect((await t.app.inject({ url: '/metrics' })).body).toMatch(/^realtime_call_hangup_failures_total 1$/m);
    expect(t.logs.find('call ended')).toHaveLength(0);

    clock.advance(61_000);
    await t.app.calls.hangUpDue();
    await waitUntil(() => t.logs.find('call ended').length === 1, 'the retried hangup');
    expect(openai.fake.hangups.at(-1)).toMatchObject({ callId: callIdOf(call), status: 200 });

    // DELETE after the end: the call is gone here too
    expectEnvelope(await endCall(t.app, String(call.headers.location)), 404);
  });

  it('a hangup answered 404 (OpenAI already ended it) counts as ended', async () => {
    const clock = new ManualClock();
    const t = await app({ MAX_CALL_SECONDS: '10' }, clock);
    const call = await postSdp(t.app);
    openai.fake.scriptHangups(status(404));
    clock.advance(10_000);
    await t.app.calls.hangUpDue();
    await waitUntil(() => t.logs.find('call ended').length === 1, 'the hangup');
    expect(t.logs.find('call ended')[0]).toMatchObject({ call_id: callIdOf(call), hangup: 'already_over', reason: 'deadline' });
  });
});

describe('docs', () => {
  it('documents both routes and both SDP body kinds', async () => {
    const t = await app();
    const doc = (await t.app.inject({ url: '/openapi.json' })).json<{
      paths: Record<string, Record<string, { requestBody?: { content: Record<string, unknown> }; responses: Record<string, { content?: Record<string, unknown> }> }>>;
    }>();
    const post = doc.paths['/v1/realtime/calls']?.post;
    expect(Object.keys(post?.requestBody?.content ?? {})).toEqual(['application/sdp', 'multipart/form-data']);
    expect(Object.keys(post?.responses['201']?.content ?? {})).toEqual(['application/sdp']);
    expect(doc.paths['/v1/realtime/calls/{call_id}']?.delete).toBeDefined();
  });
});
