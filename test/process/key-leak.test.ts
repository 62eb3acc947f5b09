import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { SITE_ORIGIN } from '../support/app.js';
import { FakeOpenAI, type Behaviour } from '../support/fake-openai.js';
import { secretRuns } from '../support/leak-scan.js';
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
    // The line kept OpenAI's words around the key: only what is not a plain word went.
    expect(upstreamLine).toContain('invalid_api_key');
    expect(upstreamLine).toContain('[cut]');
    expect(leaks(proc.lines.join('\n'))).toEqual([]);
    expect(leaks(proc.stderr())).toEqual([]);
    expect(leaks(answer)).toEqual([]);
  });
});

// Issue 16: matching encodings one by one lost to 13 of them. A realistic 164-character project key
// (sk-proj- + 74 + "T3BlbkFJ" + 74, OpenAI's shape); its secret part is all past the prefix.
const PROJECT_KEY = `sk-proj-${randomBytes(60).toString('base64url').slice(0, 74)}T3BlbkFJ${randomBytes(60).toString('base64url').slice(0, 74)}`;
const SECRET_PART = PROJECT_KEY.slice('sk-proj-'.length);

const pct = (text: string) => [...Buffer.from(text)].map((byte) => `%${byte.toString(16).toUpperCase().padStart(2, '0')}`).join('');
const hex = (text: string) => Buffer.from(text).toString('hex');
const entities = (text: string) => [...text].map((char) => `&#${char.charCodeAt(0)};`).join('');
const uEscapes = (text: string) => [...text].map((char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, '0')}`).join('');
// Words, as OpenAI's own messages are made of: what pushes an echoed key past a 500-character cut.
const FILLER = 'Your request could not be completed because the credential you sent is not valid here and '.repeat(6);

interface Echo {
  /** The upstream error text carrying the key in this form. */
  text: string;
  /** Sent as text/plain instead of OpenAI's JSON (the \u escapes are then the text itself). */
  plain?: boolean;
  /** Header values carrying the key too (they must be valid header characters). */
  headers?: Record<string, string>;
}

const ECHOES: [string, Echo][] = [
  ['wholly %-encoded', { text: `Incorrect API key provided: ${pct(PROJECT_KEY)}.`, headers: { 'www-authenticate': `Bearer error_description="${pct(PROJECT_KEY)}"` } }],
  ['base64 of "Bearer <key>" (not 3-byte aligned)', { text: `Could not parse the header ${Buffer.from(`Bearer ${PROJECT_KEY}`).toString('base64')}`, headers: { 'x-echo': Buffer.from(`Bearer ${PROJECT_KEY}`).toString('base64') } }],
  ['base64 of "Basic user:<key>"', { text: `Authorization: Basic ${Buffer.from(`user:${PROJECT_KEY}`).toString('base64')} is not accepted`, headers: { 'x-echo': `Basic ${Buffer.from(`user:${PROJECT_KEY}`).toString('base64')}` } }],
  ['hex, also as the whole x-request-id', { text: `key ${hex(PROJECT_KEY)} refused`, headers: { 'x-request-id': `req_${hex(PROJECT_KEY)}` } }],
  // OpenAI's request id shape exactly (req_ + 32 hex), but what it carries is 16 characters of the key.
  ['hex in an x-request-id of OpenAI’s exact shape', { text: 'Incorrect API key provided.', headers: { 'x-request-id': `req_${hex(SECRET_PART.slice(20, 36))}` } }],
  ['HTML entities', { text: `Incorrect API key provided: ${entities(PROJECT_KEY)}` }],
  ['\\u escapes in text/plain', { text: `Unauthorized: ${uEscapes(PROJECT_KEY)}`, plain: true }],
  ['one middle character %-encoded', { text: `Incorrect API key provided: ${PROJECT_KEY.slice(0, 90)}${pct(PROJECT_KEY.charAt(90))}${PROJECT_KEY.slice(91)}.` }],
  ['split across a line break', { text: `Incorrect API key provided: ${PROJECT_KEY.slice(0, 70)}\n${PROJECT_KEY.slice(70)}.` }],
  ['split across a line break in text/plain', { text: `Unauthorized: ${PROJECT_KEY.slice(0, 70)}\r\n${PROJECT_KEY.slice(70)}`, plain: true }],
  // The old 500-character cut fell inside the key; without its prefix no pattern knew it.
  ['unprefixed, straddling the 500-character cut', { text: `${FILLER.slice(0, 380)} ${SECRET_PART} end` }],
  ['unprefixed in error.param and error.code', { text: 'Bad value.' }],
];

function echoBehaviour(status: number, echo: Echo, form: string): Behaviour {
  const headers = echo.headers ?? {};
  if (echo.plain) return { kind: 'raw', status, contentType: 'text/plain', body: echo.text, headers };
  const inFields = form.includes('error.param');
  const body = JSON.stringify({
    error: {
      message: echo.text,
      type: 'invalid_request_error',
      param: inFields ? SECRET_PART.slice(0, 60) : null,
      code: inFields ? SECRET_PART.slice(60, 120) : 'invalid_api_key',
    },
  });
  return { kind: 'raw', status, body, headers };
}

describe('a 164-character project key echoed in any encoding: no 12-character run of it in any output', () => {
  it('the scan finds every echo in the fake’s own answer (so a clean scan below means something)', () => {
    for (const [form, echo] of ECHOES) {
      const answer = `${echo.text}\n${JSON.stringify(echoBehaviour(401, echo, form))}\n${Object.values(echo.headers ?? {}).join('\n')}`;
      expect(secretRuns(answer, SECRET_PART), form).not.toEqual([]);
    }
  });

  it.each(ECHOES)('%s, in OpenAI 401, 400 and 500 bodies and headers', async (form, echo) => {
    fake = await FakeOpenAI.start({ apiKey: PROJECT_KEY });
    const proc = await startServer({
      OPENAI_API_KEY: PROJECT_KEY,
      OPENAI_BASE_URL: fake.baseUrl,
      ALLOWED_ORIGINS: SITE_ORIGIN,
      LOG_LEVEL: 'debug',
      OPENAI_MAX_RETRIES: '0',
      RATE_LIMIT_PER_MINUTE: '100',
    });
    server = proc;
    const answers: string[] = [];
    const requestIds: string[] = [];
    for (const status of [401, 400, 500]) {
      fake.script(echoBehaviour(status, echo, form));
      const response = await fetch(`${proc.url}/v1/realtime/token`, { method: 'POST', headers: { origin: SITE_ORIGIN } });
      expect(response.status).toBe(status === 500 ? 503 : 502);
      answers.push(`${JSON.stringify([...response.headers])}\n${await response.text()}`);
      requestIds.push(response.headers.get('x-request-id') as string);
    }
    await waitUntil(
      () => requestIds.every((id) => proc.lines.some((line) => line.includes(id) && line.includes('"OpenAI call failed"'))),
      'the upstream failure lines',
    );
    proc.child.kill('SIGTERM');
    await proc.exited;
    expect(secretRuns(proc.lines.join('\n'), SECRET_PART)).toEqual([]);
    expect(secretRuns(proc.stderr(), SECRET_PART)).toEqual([]);
    expect(secretRuns(answers.join('\n'), SECRET_PART)).toEqual([]);
    const failures = proc.lines.filter((line) => line.includes('"OpenAI call failed"'));
    // What the operator still learns: OpenAI's status, and its error code when it is one.
    expect(failures.map((line) => (JSON.parse(line) as { upstream_status: number }).upstream_status)).toEqual([401, 400, 500]);
    if (!echo.plain && !form.includes('error.param')) expect(failures.every((line) => line.includes('"openai_code":"invalid_api_key"'))).toBe(true);
  });
});
