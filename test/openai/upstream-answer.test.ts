import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { openaiRequestId, upstreamErrorFields } from '../../src/openai/upstream-answer.js';
import { PLACEHOLDER, plainWords, safeIdentifier } from '../../src/redact.js';
import { secretRuns } from '../support/leak-scan.js';

const KEY = `sk-proj-${randomBytes(60).toString('base64url').slice(0, 74)}T3BlbkFJ${randomBytes(60).toString('base64url').slice(0, 74)}`;
const SECRET = KEY.slice('sk-proj-'.length);

describe('plainWords: free text reduced to plain words', () => {
  it('keeps what OpenAI’s own messages say, and cuts what is not a word', () => {
    expect(plainWords('Incorrect API key provided: sk-abc***xyz. You can find your API key at https://platform.openai.com/account/api-keys.')).toBe(
      `Incorrect API key provided: ${PLACEHOLDER} You can find your API key at ${PLACEHOLDER}`,
    );
    expect(plainWords("You didn't provide an API key. The model `gpt-realtime` does not exist or you do not have access to it.")).toBe(
      `You didn't provide an API key. The model ${PLACEHOLDER} does not exist or you do not have access to it.`,
    );
    expect(plainWords('Rate limit reached for requests (rate_limit_exceeded); retry in 20 seconds.')).toBe(
      'Rate limit reached for requests (rate_limit_exceeded); retry in 20 seconds.',
    );
    expect(plainWords('OpenAI is overloaded. HTTP 503')).toBe('OpenAI is overloaded. HTTP 503');
  });

  it('merges a run of cut tokens into one placeholder and stops at maxChars, at a word', () => {
    expect(plainWords(`a ${'x1y2z3 '.repeat(5)}b`)).toBe(`a ${PLACEHOLDER} b`);
    const long = plainWords('word '.repeat(100), 50);
    expect(long.length).toBeLessThanOrEqual(50);
    expect(long.endsWith('word')).toBe(true);
  });

  it.each([
    ['the key as is', KEY],
    ['the key without its prefix', SECRET],
    ['upper-cased', KEY.toUpperCase()],
    ['lower-cased', KEY.toLowerCase()],
    ['wholly %-encoded', [...Buffer.from(KEY)].map((b) => `%${b.toString(16)}`).join('')],
    ['base64 of "Bearer <key>"', Buffer.from(`Bearer ${KEY}`).toString('base64')],
    ['base64 of "Basic user:<key>"', Buffer.from(`user:${KEY}`).toString('base64')],
    ['hex', Buffer.from(KEY).toString('hex')],
    ['HTML entities', [...KEY].map((c) => `&#${c.charCodeAt(0)};`).join('')],
    ['\\u escapes', [...KEY].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')],
    ['split across a line break', `${KEY.slice(0, 70)}\n${KEY.slice(70)}`],
    ['split by spaces into 20-character pieces', KEY.match(/.{1,20}/g)?.join(' ') ?? ''],
  ])('leaves no 12-character run of a key given %s', (_form, form) => {
    const reduced = plainWords(`Incorrect API key provided: ${form} (check it).`, 10_000);
    expect(secretRuns(reduced, SECRET)).toEqual([]);
    expect(reduced).toContain('Incorrect API key provided:');
  });

  it('property: no 12-character run of any random key survives, whatever words surround it', () => {
    const keyArb = fc.string({ unit: fc.constantFrom(...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-'), minLength: 40, maxLength: 160 });
    const wordsArb = fc.array(fc.constantFrom('Incorrect', 'API', 'key', 'provided:', 'the', 'value', 'is', 'invalid.'), { maxLength: 8 });
    fc.assert(
      fc.property(keyArb, wordsArb, wordsArb, fc.integer({ min: 0, max: 30 }), (key, before, after, split) => {
        // Keys of random characters only: an all-lowercase run of letters is a word, not a key.
        fc.pre(/[0-9_-]/.test(key.slice(0, 12)) || /[A-Z]/.test(key.slice(1, 12)));
        const echoed = split > 0 ? `${key.slice(0, split)}\n${key.slice(split)}` : key;
        const reduced = plainWords([...before, echoed, ...after].join(' '), 10_000);
        return secretRuns(reduced, key).length === 0;
      }),
      { numRuns: 300 },
    );
  });
});

describe('safeIdentifier: OpenAI’s error code, type and param, or nothing', () => {
  it.each([
    ['invalid_api_key', 'invalid_api_key'],
    ['invalid_request_error', 'invalid_request_error'],
    ['session.audio.output.voice', 'session.audio.output.voice'],
    ['tools.0.name', 'tools.0.name'],
    ['beta_api_shape_disabled', 'beta_api_shape_disabled'],
    [SECRET.slice(0, 60), undefined],
    [SECRET.slice(0, 60).toLowerCase(), undefined],
    ['Invalid_Api_Key', undefined],
    ['a'.repeat(65), undefined],
    ['x_'.repeat(20), undefined],
    [42, undefined],
    [null, undefined],
  ])('%j -> %j', (value, expected) => {
    expect(safeIdentifier(value)).toBe(expected);
  });
});

describe('openaiRequestId: kept only in OpenAI’s shape', () => {
  it('keeps req_ + 32 random hex digits', () => {
    const id = `req_${randomBytes(16).toString('hex')}`;
    expect(openaiRequestId(id)).toBe(id);
    expect(openaiRequestId([id, 'other'])).toBe(id);
  });

  it.each([
    ['hex of the whole key', `req_${Buffer.from(KEY).toString('hex')}`],
    ['hex of 16 key characters (OpenAI’s exact length)', `req_${Buffer.from(SECRET.slice(0, 16)).toString('hex')}`],
    ['hex of key characters at an odd nibble', `req_${Buffer.from(SECRET.slice(0, 17)).toString('hex').slice(1, 33)}`],
    ['key characters themselves', `req_${SECRET.slice(0, 32)}`],
    ['another shape', 'req_fake_1'],
    ['nothing', undefined],
  ])('drops %s', (_what, id) => {
    expect(openaiRequestId(id)).toBeUndefined();
  });
});

describe('upstreamErrorFields', () => {
  it('takes OpenAI’s JSON error apart: identifiers kept, message reduced, request id checked', () => {
    const requestId = `req_${randomBytes(16).toString('hex')}`;
    const body = JSON.stringify({
      error: { message: `Incorrect API key provided: ${KEY}.`, type: 'invalid_request_error', param: null, code: 'invalid_api_key' },
    });
    expect(upstreamErrorFields(body, { 'x-request-id': requestId })).toEqual({
      requestId,
      type: 'invalid_request_error',
      code: 'invalid_api_key',
      message: `Incorrect API key provided: ${PLACEHOLDER}`,
    });
  });

  it('reads an error that is a plain string, and a body that is not JSON', () => {
    expect(upstreamErrorFields(`{"error":"invalid_api_key: \\u0073${KEY.slice(1)}"}`, {})).toEqual({ message: `invalid_api_key: ${PLACEHOLDER}` });
    expect(upstreamErrorFields(`<html><body>Bad gateway ${KEY}</body></html>`, {})).toEqual({ message: `${PLACEHOLDER} gateway ${PLACEHOLDER}` });
    expect(upstreamErrorFields('', {})).toEqual({});
    expect(upstreamErrorFields('{"error":null}', {})).toEqual({});
  });
});
