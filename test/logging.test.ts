import { beforeEach, describe, expect, it } from 'vitest';
import { createLogger, isoStamp, isoTime } from '../src/logger.js';
import { FAKE_API_KEY } from './support/fake-openai.js';
import { EXTENSION_ORIGIN, LogCapture, useFakeOpenAI, type TestApp } from './support/app.js';

const openai = useFakeOpenAI();
let t: TestApp;

beforeEach(async () => {
  t = await openai.app({ TRUST_PROXY: '1' });
});


describe('logs', () => {
  it('write one audit line per minted secret, and no key, secret, Authorization or instructions', async () => {
    const instructions = 'SECRET-PERSONA-TEXT call the refs blind';
    const response = await t.app.inject({
      method: 'POST',
      url: '/v1/realtime/token',
      remoteAddress: '100.64.0.2',
      headers: {
        origin: EXTENSION_ORIGIN,
        'content-type': 'application/json',
        'x-request-id': 'audit-test-1',
        'x-forwarded-for': '203.0.113.9',
        authorization: 'Bearer sk-client-sent-this-by-mistake',
      },
      payload: JSON.stringify({ instructions, voice: 'cedar', difficulty: 'savage' }),
    });
    expect(response.statusCode).toBe(200);
    const { client_secret: secret, session_id: sessionId } = response.json<{ client_secret: string; session_id: string }>();

    const audit = t.logs.find('client secret minted');
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({
      audit: 'client_secret_minted',
      request_id: 'audit-test-1',
      origin: EXTENSION_ORIGIN,
      client_ip: '203.0.113.9',
      model: 'gpt-realtime',
      voice: 'cedar',
      difficulty: 'savage',
      session_id: sessionId,
      expires_at: expect.any(Number) as unknown,
      upstream_ms: expect.any(Number) as unknown,
    });
    for (const line of t.logs.lines) expect(line.request_id === undefined || typeof line.request_id === 'string').toBe(true);
    expect(t.logs.lines.filter((l) => l.request_id === 'audit-test-1').length).toBeGreaterThanOrEqual(2);

    for (const forbidden of [FAKE_API_KEY, secret, 'SECRET-PERSONA-TEXT', 'sk-client-sent-this-by-mistake', 'Parker']) {
      expect(t.logs.raw).not.toContain(forbidden);
    }
    expect(t.logs.raw.toLowerCase()).not.toContain('authorization');
  });

  it('censors secret-named fields even if a future line passes them to the logger', () => {
    const capture = new LogCapture();
    const logger = createLogger({ logLevel: 'info' }, capture);
    logger.info({ instructions: 'persona', client_secret: 'ek_1', headers: { authorization: 'Bearer sk-x' }, apiKey: 'sk-y' }, 'oops');
    expect(capture.raw).not.toMatch(/persona|ek_1|sk-x|sk-y/);
    expect(capture.lines[0]).toMatchObject({ instructions: '[redacted]', client_secret: '[redacted]' });
  });

  it('scrubs the key from every line in every form it may be echoed in, and anything secret-shaped', () => {
    const key = 'sk-proj-Zq3xY7wV2uT9sR4pO1nM6lK8jH5gF0dS3aQ';
    const capture = new LogCapture();
    const logger = createLogger({ logLevel: 'info', openaiApiKey: key }, capture);
    const forms = [
      `Bearer%20${key}`,
      `tail_${key}`,
      key.toUpperCase(),
      encodeURIComponent(`Bearer ${key}`),
      [...Buffer.from(key)].map((b) => `%${b.toString(16).toUpperCase()}`).join(''),
      Buffer.from(key).toString('base64'),
      `'${key}'`,
    ];
    for (const form of forms) logger.warn({ openai_error: `Incorrect API key provided: ${form}.`, nested: { deep: [form] } }, `echo ${form}`);
    logger.info({ session: 'ek_68af296e8e408191a1120ab6383263c2' }, 'a stray client secret');
    const text = capture.raw.toLowerCase();
    expect(text).not.toContain(key.toLowerCase());
    expect(text).not.toContain(key.slice(-12).toLowerCase());
    expect(capture.raw).not.toContain(Buffer.from(key).toString('base64').slice(0, 40));
    expect(text).not.toContain('ek_68af296e');
    expect(capture.lines).toHaveLength(forms.length + 1);
    // ordinary words that merely contain sk- or ek_ survive
    logger.info({ note: 'risk-free desk-lamp task_list week_1' }, 'words');
    expect(capture.lines.at(-1)?.note).toBe('risk-free desk-lamp task_list week_1');
  });
});

describe('isoTime', () => {
  it("writes what toISOString() does, at minute, second and millisecond edges and across years", () => {
    const times = [0, 999, 1_000, 59_999, 60_000, 86_399_999, Date.UTC(2026, 11, 31, 23, 59, 59, 999), Date.UTC(2027, 0, 1), Date.UTC(2028, 1, 29, 12, 0, 9, 90)];
    for (let i = 0; i < 2_000; i++) times.push(Math.floor(Math.random() * 4_102_444_800_000));
    // Out of order on purpose: the cached minute must be replaced, never reused wrongly.
    for (const time of times) expect(isoStamp(time)).toBe(`,"time":"${new Date(time).toISOString()}"`);
  });

  it("is pino's ISO time field, for the current millisecond", () => {
    const before = Date.now();
    const stamp = isoTime();
    const after = Date.now();
    expect(stamp).toMatch(/^,"time":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"$/);
    const time = Date.parse((JSON.parse(`{${stamp.slice(1)}}`) as { time: string }).time);
    expect(time).toBeGreaterThanOrEqual(before);
    expect(time).toBeLessThanOrEqual(after);
  });
});
