import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { SITE_ORIGIN } from '../support/app.js';
import { FakeOpenAI, type Behaviour } from '../support/fake-openai.js';
import { startServer, type ServerProcess } from '../support/server-process.js';
import { waitUntil } from '../support/wait.js';

// A realistic project key: OpenAI's prefix and 40 characters of the key alphabet.
const KEY = `sk-proj-${randomBytes(40).toString('base64url').slice(0, 40)}`;
// Its distinctive end: what an echo that mangles the prefix still carries.
const KEY_TAIL = KEY.slice(-12);

const hexEscaped = (text: string) => [...Buffer.from(text)].map((byte) => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`).join('');
const unicodeEscaped = (text: string) => [...text].map((char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');

function refusedWith(message: string): Behaviour {
  return {
    kind: 'status',
    status: 401,
    body: { error: { message, type: 'invalid_request_error', param: null, code: 'invalid_api_key' } },
  };
}

// Issue 9: OpenAI's 401 text echoed the key in forms the scrubber missed. Each form is what some
// layer between us and OpenAI could plausibly echo back.
const FORMS: [string, Behaviour][] = [
  ['a URL-encoded Bearer header', refusedWith(`Could not parse header: Bearer%20${KEY}`)],
  ['glued to a word with an underscore', refusedWith(`bad credential tail_${KEY} (rotate it)`)],
  ['upper-cased', refusedWith(`Incorrect API key provided: ${KEY.toUpperCase()}.`)],
  ['URL-encoded entirely', refusedWith(`Incorrect API key provided: ${hexEscaped(KEY)}.`)],
  ['base64', refusedWith(`Incorrect credential: ${Buffer.from(KEY).toString('base64')}`)],
  [
    'in a JSON string with \\u escapes',
    {
      kind: 'raw',
      status: 401,
      body: `{"error":{"message":"Incorrect API key provided: ${unicodeEscaped(KEY)}","type":"invalid_request_error","code":"invalid_api_key"}}`,
    },
  ],
  // Found by attacking the built server: an escaped first character hid the rest of the key.
  ['first character percent-encoded', refusedWith(`Incorrect API key provided: %73${KEY.slice(1)}`)],
  ['first character as an HTML entity', refusedWith(`Incorrect API key provided: &#115;${KEY.slice(1)}`)],
  ['in a JSON body whose error is a plain string', { kind: 'raw', status: 401, body: `{"error":"invalid_api_key: \\u0073${KEY.slice(1)}"}` }],
  ['in a text/plain body, first character \\u-escaped', { kind: 'raw', status: 401, contentType: 'text/plain', body: `invalid_api_key: Unauthorized: \\u0073${KEY.slice(1)}` }],
];

let fake: FakeOpenAI | undefined;
let server: ServerProcess | undefined;

afterEach(async () => {
  await server?.stop();
  server = undefined;
  await fake?.close();
});

function leaks(text: string): string[] {
  const lower = text.toLowerCase();
  return [KEY, KEY_TAIL].filter((needle) => lower.includes(needle.toLowerCase()));
}

describe('the API key echoed back by OpenAI never leaves the process', () => {
  it('the fake accepts the realistic key (the leak tests below reach the 401 they script)', async () => {
    fake = await FakeOpenAI.start({ apiKey: KEY });
    server = await startServer({ OPENAI_API_KEY: KEY, OPENAI_BASE_URL: fake.baseUrl, ALLOWED_ORIGINS: SITE_ORIGIN });
    const response = await fetch(`${server.url}/v1/realtime/token`, { method: 'POST', headers: { origin: SITE_ORIGIN } });
    expect(response.status).toBe(200);
    expect(fake.mintRequests[0]?.headers.authorization).toBe(`Bearer ${KEY}`);
  });

  it.each(FORMS)('key %s in OpenAI 401 text: no key bytes in stdout, stderr or the answer', async (_form, behaviour) => {
    fake = await FakeOpenAI.start({ apiKey: KEY });
    const proc = await startServer({ OPENAI_API_KEY: KEY, OPENAI_BASE_URL: fake.baseUrl, ALLOWED_ORIGINS: SITE_ORIGIN, LOG_LEVEL: 'debug' });
    server = proc;
    fake.script(behaviour);
    const response = await fetch(`${proc.url}/v1/realtime/token`, { method: 'POST', headers: { origin: SITE_ORIGIN } });
    const answer = `${JSON.stringify([...response.headers])}\n${await response.text()}`;
    expect(response.status).toBe(502);
    const requestId = response.headers.get('x-request-id') as string;
    // The lines of this request, the upstream failure included, have been written.
    await waitUntil(
      () => proc.lines.some((line) => line.includes(requestId) && line.includes('"OpenAI call failed"')) &&
        proc.lines.some((line) => line.includes(requestId) && line.includes('"request refused"')),
      'the refusal log lines',
    );
    proc.child.kill('SIGTERM');
    await proc.exited;
    const upstreamLine = proc.lines.find((line) => line.includes('"OpenAI call failed"')) as string;
    // The line kept OpenAI's text around the key: only the key went.
    expect(upstreamLine).toContain('invalid_api_key');
    expect(upstreamLine).toContain('[redacted]');
    expect(leaks(proc.lines.join('\n'))).toEqual([]);
    expect(leaks(proc.stderr())).toEqual([]);
    expect(leaks(answer)).toEqual([]);
  });
});
