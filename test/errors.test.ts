import { beforeEach, describe, expect, it } from 'vitest';
import { FAKE_API_KEY } from './support/fake-openai.js';
import { expectEnvelope, SITE_ORIGIN, useFakeOpenAI, type TestApp } from './support/app.js';

const openai = useFakeOpenAI();
let t: TestApp;

beforeEach(async () => {
  t = await openai.app({ OPENAI_MAX_RETRIES: '1' }, { random: () => 0 });
});


const post = (payload: string | undefined, contentType?: string) =>
  t.app.inject({
    method: 'POST',
    url: '/v1/realtime/token',
    headers: { origin: SITE_ORIGIN, ...(contentType ? { 'content-type': contentType } : {}) },
    payload,
  });

describe('the one error envelope, row by row of the spec', () => {
  it('400 for a body that is not JSON', async () => {
    for (const payload of ['{"model":', 'nope', '{"a":1}}', '{"__proto__":{"polluted":true}}']) {
      const envelope = expectEnvelope(await post(payload, 'application/json'), 400);
      expect(envelope.error.message).toMatch(/not valid JSON/);
    }
    expect(openai.fake.mintRequests).toHaveLength(0);
  });

  it('404 for no such route, 405 with Allow for a wrong method', async () => {
    expectEnvelope(await t.app.inject({ method: 'GET', url: '/v2/nothing' }), 404);
    const wrongMethod = await t.app.inject({ method: 'GET', url: '/v1/realtime/token' });
    expectEnvelope(wrongMethod, 405);
    expect(wrongMethod.headers.allow).toContain('POST');
    expectEnvelope(await t.app.inject({ method: 'DELETE', url: '/healthz' }), 405);
  });

  it('413 for a body over 16 KiB', async () => {
    const envelope = expectEnvelope(await post(JSON.stringify({ instructions: 'x'.repeat(17_000) }), 'application/json'), 413);
    expect(envelope.error.message).toMatch(/16 KiB/);
  });

  it('415 for a body that is not application/json', async () => {
    expectEnvelope(await post('model=gpt-realtime', 'application/x-www-form-urlencoded'), 415);
    expectEnvelope(await post('{}', 'text/plain'), 415);
    expectEnvelope(await post('<a/>', 'application/xml'), 415);
    expect(openai.fake.mintRequests).toHaveLength(0);
  });

  it('422 names each bad field', async () => {
    const envelope = expectEnvelope(await post('{"voice":"nobody","sport":""}', 'application/json'), 422);
    expect(envelope.error.details).toEqual({
      fields: expect.arrayContaining([
        expect.objectContaining({ path: 'voice' }),
        expect.objectContaining({ path: 'sport' }),
      ]) as unknown,
    });
  });

  it('422 for JSON that is not an object', async () => {
    for (const payload of ['[]', '"text"', '42', 'true']) expectEnvelope(await post(payload, 'application/json'), 422);
  });

  describe('upstream failures map to 502/503/504 with a generic message', () => {
    it.each([400, 401, 403, 404])('OpenAI %i -> 502, not retried, its text not returned', async (status) => {
      openai.fake.script({
        kind: 'status',
        status,
        body: { error: { message: `Incorrect API key provided: ${FAKE_API_KEY.slice(0, 8)}***`, type: 'invalid_request_error', code: 'x' } },
      });
      const response = await t.mint();
      expectEnvelope(response, 502);
      expect(response.body).not.toContain('Incorrect API key');
      expect(response.body).not.toContain('sk-');
      expect(openai.fake.mintRequests).toHaveLength(1);
    });

    it.each([
      ['a body that is not JSON', { kind: 'raw', status: 200, body: '<html>oops</html>', contentType: 'text/html' }],
      ['JSON without value', { kind: 'raw', status: 200, body: '{"expires_at":1,"session":{"id":"sess_1"}}' }],
      ['JSON without session id', { kind: 'raw', status: 200, body: '{"value":"ek_1","expires_at":1}' }],
    ] as const)('an unusable 200 (%s) -> 502', async (_name, behaviour) => {
      openai.fake.script(behaviour);
      expectEnvelope(await t.mint(), 502);
    });

    it('429 and 5xx after retries -> 503 with retry_after', async () => {
      openai.fake.script({ kind: 'status', status: 500 }, { kind: 'status', status: 503 });
      const envelope = expectEnvelope(await t.mint(), 503);
      expect(envelope.error.retry_after).toBeGreaterThan(0);
      openai.fake.script({ kind: 'status', status: 429 }, { kind: 'status', status: 429 });
      const limited = await t.mint();
      expectEnvelope(limited, 503);
      expect(limited.headers['retry-after']).toBeDefined();
      expect(openai.fake.mintRequests).toHaveLength(4);
    });

    it('no answer within the timeout -> 504', async () => {
      const quick = await openai.app({ OPENAI_TIMEOUT_MS: '150', OPENAI_MAX_RETRIES: '0' });
      openai.fake.script({ kind: 'hang' });
      expectEnvelope(await quick.mint(), 504);
      await quick.app.close();
    });
  });
});
