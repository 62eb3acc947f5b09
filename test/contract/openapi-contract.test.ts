import { Validator } from '@seriousme/openapi-schema-validator';
import { SignJWT } from 'jose';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, SITE_ORIGIN, type Env, type TestApp } from '../support/app.js';
import { CANNED_SDP_ANSWER, FakeOpenAI } from '../support/fake-openai.js';
import { waitUntil } from '../support/wait.js';
import { prismValidator } from './prism.js';
import { multipartBody, TrafficRecorder, type Exchange, type OutgoingRequest } from './traffic.js';

/**
 * The published contract is the behaviour: real traffic to a real listening server (and the fake
 * OpenAI), every request and response judged by Stoplight Prism against the served /openapi.json.
 * Prism is not the code that generates the document, so a schema that describes the wrong thing
 * (an SDP body as an object, a 204 with a JSON body) fails here even when the generator is happy.
 */

const JWT_SECRET = 'contract-test-secret-0123456789abcdef';
const OFFER = CANNED_SDP_ANSWER.replace('a=setup:active', 'a=setup:actpass');
const BIG_HEADER = 'x'.repeat(9 * 1024);
const ADMIN_TOKEN = 'contract-admin-token-0123456789abcdef';
const ADMIN = 'GET /admin/usage';

/** Each case is its own client (TRUST_PROXY=1), so the limits of one never refuse another. */
const COMMON: Env = {
  TRUST_PROXY: '1',
  OPENAI_MAX_RETRIES: '0',
  OPENAI_TIMEOUT_MS: '1500',
  CIRCUIT_BREAKER_THRESHOLD: '1000',
  RATE_LIMIT_PER_MINUTE: '3',
  // One upstream check at boot, none during the cases: scripted answers are for the cases alone.
  HEALTH_CHECK_INTERVAL: '3600',
  // /admin/usage is in the document (and judged) only when the operator's token is set.
  ADMIN_TOKEN: ADMIN_TOKEN,
};
const CONFIGS = {
  /** The default deployment: no caller authentication. */
  open: COMMON,
  /** Caller authentication on (HS256): the /v1 routes document and answer 401. */
  auth: { ...COMMON, AUTH_JWT_SECRET: JWT_SECRET },
} satisfies Record<string, Env>;
type ConfigName = keyof typeof CONFIGS;

interface Served {
  t: TestApp;
  recorder: TrafficRecorder;
  document: Record<string, unknown>;
}

/** An exchange a case sent, and how Prism must see its request. */
interface Recorded {
  label: string;
  config: ConfigName;
  exchange: Exchange;
  request: 'valid' | 'invalid';
}

interface Context {
  fake: FakeOpenAI;
  served: Served;
  /** This case's client: an address of its own, and (auth config) a JWT for a user of its own. */
  headers: Record<string, string>;
  send: (request: OutgoingRequest) => Promise<Exchange>;
  /** A fresh app of this config whose close() begins while `request` is under way. */
  whileClosing: (request: OutgoingRequest) => Promise<Exchange>;
}

interface Case {
  /** `METHOD /path/{template}` as in the document. */
  operation: string;
  status: number;
  config: ConfigName;
  what: string;
  /** Whether the request keeps the documented contract: Prism must not flag it (valid) or must (invalid). */
  request: 'valid' | 'invalid';
  /** Sends what it takes (setup requests are recorded and judged too); returns the exchange under test. */
  run: (ctx: Context) => Promise<Exchange>;
}

const json = (body: unknown): Pick<OutgoingRequest, 'body'> => ({ body: JSON.stringify(body) });

/** `extra.headers` replace the client's own (spread `ctx.headers` into them to add one). */
const mint = (ctx: Context, extra: Partial<OutgoingRequest> = {}) =>
  ctx.send({ method: 'POST', path: '/v1/realtime/token', ...json({ voice: 'cedar' }), ...extra, headers: { 'content-type': 'application/json', ...(extra.headers ?? ctx.headers) } });
const call = (ctx: Context, extra: Partial<OutgoingRequest> = {}) =>
  ctx.send({ method: 'POST', path: '/v1/realtime/calls', body: OFFER, ...extra, headers: { 'content-type': 'application/sdp', ...(extra.headers ?? ctx.headers) } });
async function startedCall(ctx: Context): Promise<string> {
  const started = await call(ctx);
  expect(started.response.status).toBe(201);
  return started.response.headers.location!.split('/').at(-1)!;
}
const hangUp = (ctx: Context, callId: string, headers: Record<string, string> = ctx.headers) =>
  ctx.send({ method: 'DELETE', path: `/v1/realtime/calls/${callId}`, headers });
const without = (headers: Record<string, string>, ...names: string[]) =>
  Object.fromEntries(Object.entries(headers).filter(([name]) => !names.includes(name)));

const TOKEN = 'POST /v1/realtime/token';
const CALLS = 'POST /v1/realtime/calls';
const DELETE = 'DELETE /v1/realtime/calls/{call_id}';

const CASES: Case[] = [
  // /admin/usage: the operator's JSON
  { operation: ADMIN, status: 200, config: 'open', what: 'the operator token as a bearer', request: 'valid', run: async (ctx) => {
    await mint(ctx);
    return ctx.send({ method: 'GET', path: '/admin/usage', headers: { ...ctx.headers, authorization: `Bearer ${ADMIN_TOKEN}` } });
  } },
  { operation: ADMIN, status: 401, config: 'open', what: 'no operator token', request: 'valid', run: (ctx) => ctx.send({ method: 'GET', path: '/admin/usage', headers: ctx.headers }) },
  { operation: ADMIN, status: 431, config: 'open', what: 'headers over 8 KiB', request: 'valid', run: (ctx) => ctx.send({ method: 'GET', path: '/admin/usage', headers: { ...ctx.headers, 'x-padding': BIG_HEADER } }) },
  { operation: ADMIN, status: 503, config: 'open', what: 'the replica is shutting down', request: 'valid', run: (ctx) => ctx.whileClosing({ method: 'GET', path: '/admin/usage', headers: ctx.headers }) },
  // GET /, /healthz, /readyz
  ...(['/', '/healthz', '/readyz'] as const).flatMap((path): Case[] => [
    { operation: `GET ${path}`, status: 200, config: 'open', what: 'answers', request: 'valid', run: (ctx) => ctx.send({ method: 'GET', path, headers: ctx.headers }) },
    { operation: `GET ${path}`, status: 431, config: 'open', what: 'headers over 8 KiB', request: 'valid', run: (ctx) => ctx.send({ method: 'GET', path, headers: { ...ctx.headers, 'x-padding': BIG_HEADER } }) },
    { operation: `GET ${path}`, status: 503, config: 'open', what: 'the replica is shutting down', request: 'valid', run: (ctx) => ctx.whileClosing({ method: 'GET', path, headers: ctx.headers }) },
  ]),
  {
    operation: 'GET /readyz', status: 503, config: 'open', what: 'OpenAI refused the key', request: 'valid',
    run: async (ctx) => {
      // A key the (fake) OpenAI refuses, whatever the readiness check asks it.
      const t = await buildTestApp(ctx.fake, { ...CONFIGS.open, OPENAI_API_KEY: 'sk-revoked-0123456789abcdefghij' });
      try {
        await waitUntil(async () => (await t.app.inject({ method: 'GET', url: '/readyz' })).statusCode === 503, 'the key refused');
        const exchange = await new TrafficRecorder(await t.app.listen({ port: 0, host: '127.0.0.1' })).send({ method: 'GET', path: '/readyz', headers: ctx.headers });
        ctx.served.recorder.exchanges.push(exchange);
        return exchange;
      } finally {
        await t.app.close();
      }
    },
  },

  // POST /v1/realtime/token
  { operation: TOKEN, status: 200, config: 'open', what: 'mints a secret', request: 'valid', run: (ctx) => mint(ctx) },
  { operation: TOKEN, status: 200, config: 'open', what: 'no body at all means all defaults', request: 'valid', run: (ctx) => ctx.send({ method: 'POST', path: '/v1/realtime/token', headers: ctx.headers }) },
  { operation: TOKEN, status: 200, config: 'auth', what: 'mints for a signed-in user', request: 'valid', run: (ctx) => mint(ctx) },
  { operation: TOKEN, status: 400, config: 'open', what: 'the body is not JSON', request: 'invalid', run: (ctx) => mint(ctx, { body: '{"voice":' }) },
  { operation: TOKEN, status: 401, config: 'auth', what: 'no bearer JWT', request: 'invalid', run: (ctx) => mint(ctx, { headers: without(ctx.headers, 'authorization') }) },
  { operation: TOKEN, status: 401, config: 'auth', what: 'a JWT signed with another key', request: 'valid', run: async (ctx) => mint(ctx, { headers: { ...ctx.headers, authorization: `Bearer ${await jwtFor('mallory', 'another-secret-of-at-least-32-bytes!')}` } }) },
  { operation: TOKEN, status: 403, config: 'open', what: 'no Origin', request: 'invalid', run: (ctx) => mint(ctx, { headers: without(ctx.headers, 'origin') }) },
  { operation: TOKEN, status: 403, config: 'open', what: 'an Origin not allowed', request: 'valid', run: (ctx) => mint(ctx, { headers: { ...ctx.headers, origin: 'https://evil.example' } }) },
  { operation: TOKEN, status: 413, config: 'open', what: 'a body over 16 KiB', request: 'invalid', run: (ctx) => mint(ctx, json({ instructions: 'a'.repeat(17 * 1024) })) },
  { operation: TOKEN, status: 415, config: 'open', what: 'a text/plain body', request: 'invalid', run: (ctx) => mint(ctx, { headers: { ...ctx.headers, 'content-type': 'text/plain' }, body: 'voice=cedar' }) },
  { operation: TOKEN, status: 422, config: 'open', what: 'a voice not allowed', request: 'invalid', run: (ctx) => mint(ctx, json({ voice: 'robot' })) },
  {
    operation: TOKEN, status: 429, config: 'open', what: 'over the per-minute limit', request: 'valid',
    run: async (ctx) => {
      for (let i = 0; i < 3; i++) expect((await mint(ctx)).response.status).toBe(200);
      return mint(ctx);
    },
  },
  { operation: TOKEN, status: 431, config: 'open', what: 'headers over 8 KiB', request: 'valid', run: (ctx) => mint(ctx, { headers: { ...ctx.headers, 'x-padding': BIG_HEADER } }) },
  {
    operation: TOKEN, status: 502, config: 'open', what: 'OpenAI refused the request', request: 'valid',
    run: (ctx) => {
      ctx.fake.script({ kind: 'status', status: 403 });
      return mint(ctx);
    },
  },
  {
    operation: TOKEN, status: 503, config: 'open', what: 'OpenAI overloaded', request: 'valid',
    run: (ctx) => {
      ctx.fake.script({ kind: 'status', status: 503 });
      return mint(ctx);
    },
  },
  {
    operation: TOKEN, status: 504, config: 'open', what: 'OpenAI does not answer in time', request: 'valid',
    run: (ctx) => {
      ctx.fake.script({ kind: 'hang' });
      return mint(ctx);
    },
  },

  // POST /v1/realtime/calls
  { operation: CALLS, status: 201, config: 'open', what: 'an application/sdp offer', request: 'valid', run: (ctx) => call(ctx) },
  { operation: CALLS, status: 201, config: 'open', what: 'an application/sdp offer with choices in the query', request: 'valid', run: (ctx) => call(ctx, { query: { voice: 'marin', difficulty: 'savage', sport: 'nba' } }) },
  {
    operation: CALLS, status: 201, config: 'open', what: 'multipart/form-data with parts sdp and options', request: 'valid',
    run: async (ctx) => {
      const form = await multipartBody({ sdp: { value: OFFER, type: 'application/sdp' }, options: { value: JSON.stringify({ voice: 'cedar', sport: 'nfl' }), type: 'application/json' } });
      return call(ctx, { headers: { ...ctx.headers, 'content-type': form.contentType }, body: form.body });
    },
  },
  { operation: CALLS, status: 201, config: 'auth', what: 'an offer from a signed-in user', request: 'valid', run: (ctx) => call(ctx) },
  { operation: CALLS, status: 400, config: 'open', what: 'a body that is not an SDP offer', request: 'invalid', run: (ctx) => call(ctx, { body: 'hello' }) },
  {
    operation: CALLS, status: 400, config: 'open', what: 'multipart without the sdp part', request: 'invalid',
    run: async (ctx) => {
      const form = await multipartBody({ options: { value: '{}', type: 'application/json' } });
      return call(ctx, { headers: { ...ctx.headers, 'content-type': form.contentType }, body: form.body });
    },
  },
  { operation: CALLS, status: 401, config: 'auth', what: 'no bearer JWT', request: 'invalid', run: (ctx) => call(ctx, { headers: without(ctx.headers, 'authorization') }) },
  { operation: CALLS, status: 403, config: 'open', what: 'no Origin', request: 'invalid', run: (ctx) => call(ctx, { headers: without(ctx.headers, 'origin') }) },
  { operation: CALLS, status: 413, config: 'open', what: 'an offer over 32 KiB', request: 'invalid', run: (ctx) => call(ctx, { body: `${OFFER}${'a=x-padding\r\n'.repeat(3000)}` }) },
  { operation: CALLS, status: 415, config: 'open', what: 'a JSON body', request: 'invalid', run: (ctx) => call(ctx, { ...json({ sdp: OFFER }), headers: { ...ctx.headers, 'content-type': 'application/json' } }) },
  { operation: CALLS, status: 422, config: 'open', what: 'a voice not allowed in the query', request: 'invalid', run: (ctx) => call(ctx, { query: { voice: 'robot' } }) },
  {
    operation: CALLS, status: 429, config: 'open', what: 'a third call at once', request: 'valid',
    run: async (ctx) => {
      await startedCall(ctx);
      await startedCall(ctx);
      return call(ctx);
    },
  },
  { operation: CALLS, status: 431, config: 'open', what: 'headers over 8 KiB', request: 'valid', run: (ctx) => call(ctx, { headers: { ...ctx.headers, 'x-padding': BIG_HEADER } }) },
  {
    operation: CALLS, status: 502, config: 'open', what: 'OpenAI refused the offer', request: 'valid',
    run: (ctx) => {
      ctx.fake.scriptCalls({ kind: 'status', status: 400 });
      return call(ctx);
    },
  },
  {
    operation: CALLS, status: 503, config: 'open', what: 'OpenAI overloaded', request: 'valid',
    run: (ctx) => {
      ctx.fake.scriptCalls({ kind: 'status', status: 500 });
      return call(ctx);
    },
  },
  {
    operation: CALLS, status: 504, config: 'open', what: 'OpenAI does not answer in time', request: 'valid',
    run: (ctx) => {
      ctx.fake.scriptCalls({ kind: 'hang' });
      return call(ctx);
    },
  },

  // DELETE /v1/realtime/calls/{call_id}
  { operation: DELETE, status: 204, config: 'open', what: 'ends the call', request: 'valid', run: async (ctx) => hangUp(ctx, await startedCall(ctx)) },
  { operation: DELETE, status: 204, config: 'auth', what: 'a signed-in user ends the call', request: 'valid', run: async (ctx) => hangUp(ctx, await startedCall(ctx)) },
  { operation: DELETE, status: 401, config: 'auth', what: 'no bearer JWT', request: 'invalid', run: async (ctx) => hangUp(ctx, await startedCall(ctx), without(ctx.headers, 'authorization')) },
  { operation: DELETE, status: 403, config: 'open', what: 'no Origin', request: 'invalid', run: async (ctx) => hangUp(ctx, await startedCall(ctx), without(ctx.headers, 'origin')) },
  { operation: DELETE, status: 404, config: 'open', what: 'an unknown call', request: 'valid', run: (ctx) => hangUp(ctx, 'rtc_unknown') },
  { operation: DELETE, status: 431, config: 'open', what: 'headers over 8 KiB', request: 'valid', run: (ctx) => hangUp(ctx, 'rtc_unknown', { ...ctx.headers, 'x-padding': BIG_HEADER }) },
  {
    operation: DELETE, status: 502, config: 'open', what: 'OpenAI refused the hangup', request: 'valid',
    run: async (ctx) => {
      const callId = await startedCall(ctx);
      ctx.fake.scriptHangupsOf(callId, { kind: 'status', status: 403 });
      return hangUp(ctx, callId);
    },
  },
  {
    operation: DELETE, status: 503, config: 'open', what: 'OpenAI overloaded', request: 'valid',
    run: async (ctx) => {
      const callId = await startedCall(ctx);
      ctx.fake.scriptHangupsOf(callId, { kind: 'status', status: 503 });
      return hangUp(ctx, callId);
    },
  },
  {
    operation: DELETE, status: 504, config: 'open', what: 'OpenAI does not answer in time', request: 'valid',
    run: async (ctx) => {
      const callId = await startedCall(ctx);
      ctx.fake.scriptHangupsOf(callId, { kind: 'hang' });
      return hangUp(ctx, callId);
    },
  },
];

async function jwtFor(subject: string, secret = JWT_SECRET): Promise<string> {
  return new SignJWT({}).setProtectedHeader({ alg: 'HS256' }).setSubject(subject).setExpirationTime('5m').sign(new TextEncoder().encode(secret));
}

/** Every documented `METHOD /path` × status of a document. */
function documented(document: Record<string, unknown>): string[] {
  const pairs: string[] = [];
  const paths = document.paths as Record<string, Record<string, { responses: Record<string, unknown> }>>;
  for (const [path, item] of Object.entries(paths)) {
    for (const [method, operation] of Object.entries(item)) {
      for (const status of Object.keys(operation.responses)) pairs.push(`${method.toUpperCase()} ${path} ${status}`);
    }
  }
  return pairs;
}

/*
 * The cases only send and record. Prism judges the recording afterwards, in its own test: its first
 * validations compile schemas for a second or more, and a stalled event loop in this process would
 * make the in-process server answer 503 (overloaded) to the next case.
 */
describe('the served OpenAPI document is what the service does (judged by Stoplight Prism)', () => {
  let fake: FakeOpenAI;
  const served = {} as Record<ConfigName, Served>;
  const recorded: Recorded[] = [];
  let clients = 0;

  beforeAll(async () => {
    fake = await FakeOpenAI.start();
    for (const name of Object.keys(CONFIGS) as ConfigName[]) {
      const t = await buildTestApp(fake, CONFIGS[name]);
      const recorder = new TrafficRecorder(await t.app.listen({ port: 0, host: '127.0.0.1' }));
      const document = (await t.app.inject({ method: 'GET', url: '/openapi.json' })).json<Record<string, unknown>>();
      served[name] = { t, recorder, document };
    }
  });

  afterAll(async () => {
    for (const { t } of Object.values(served)) await t.app.close();
    await fake?.close();
  });

  it.each(CASES.map((c) => [`${c.operation} ${c.status} (${c.config}): ${c.what}`, c] as const))('%s', async (name, testCase) => {
    const own = served[testCase.config];
    clients += 1;
    const headers: Record<string, string> = { origin: SITE_ORIGIN, 'x-forwarded-for': `127.1.${clients >> 8}.${clients & 255}` };
    if (testCase.config === 'auth') headers.authorization = `Bearer ${await jwtFor(`user_${clients}`)}`;
    const first = own.recorder.exchanges.length;
    const ctx: Context = {
      fake,
      served: own,
      headers,
      send: (request) => own.recorder.send(request),
      whileClosing: async (request) => {
        const t = await buildTestApp(fake, CONFIGS[testCase.config]);
        const recorder = new TrafficRecorder(await t.app.listen({ port: 0, host: '127.0.0.1' }));
        let closed: Promise<void> | undefined;
        const exchange = await recorder.sendSplit(request, async () => {
          closed = t.app.close();
          await waitUntil(() => t.app.draining, 'close() to begin');
        });
        await closed;
        own.recorder.exchanges.push(exchange);
        return exchange;
      },
    };
    const exchange = await testCase.run(ctx);
    for (const sent of own.recorder.exchanges.slice(first)) {
      // Setup requests (the mints before a 429, the call before a DELETE) keep the contract too.
      recorded.push({ label: name, config: testCase.config, exchange: sent, request: sent === exchange ? testCase.request : 'valid' });
    }
    expect(exchange.response.status, exchange.response.body.toString()).toBe(testCase.status);
    expect(exchange.response.headers['x-request-id']).toBeTruthy();
  });

  it('Prism finds every exchange in the document: no response breaks it, no valid request is flagged, every invalid one is', async () => {
    expect(recorded.length).toBeGreaterThanOrEqual(CASES.length);
    const validators = {} as Record<ConfigName, Awaited<ReturnType<typeof prismValidator>>>;
    for (const name of Object.keys(CONFIGS) as ConfigName[]) validators[name] = await prismValidator(served[name].document);
    const failures: string[] = [];
    for (const { label, config, exchange, request } of recorded) {
      const verdict = await validators[config](exchange);
      const where = `[${label}] ${exchange.request.method} ${exchange.request.path} -> ${exchange.response.status}`;
      if (!verdict.routed) failures.push(`${where}: Prism finds no such operation in the document`);
      for (const v of verdict.response) failures.push(`${where}: ${v.severity} ${v.location}: ${v.message}`);
      if (request === 'invalid' && verdict.request.length === 0) failures.push(`${where}: the document does not say this request is wrong (Prism accepts it)`);
      if (request === 'valid') for (const v of verdict.request) failures.push(`${where}: a valid request flagged: ${v.severity} ${v.location}: ${v.message}`);
    }
    expect(failures).toEqual([]);
  });

  it.each(Object.keys(CONFIGS) as ConfigName[])('the %s document is valid OpenAPI 3.0 (an independent schema check)', async (name) => {
    const result = await new Validator().validate(served[name].document);
    expect(result.errors ?? [], JSON.stringify(result.errors, null, 2)).toEqual([]);
    expect(result.valid).toBe(true);
  });

  it('covers every documented route × status with a case, and documents every case', () => {
    const cases = new Set(CASES.map((c) => `${c.operation} ${c.status}`));
    const pairs = new Set(Object.values(served).flatMap(({ document }) => documented(document)));
    const missing = [...pairs].filter((pair) => !cases.has(pair));
    const undocumented = [...cases].filter((pair) => !pairs.has(pair));
    expect(missing, 'documented statuses without a case').toEqual([]);
    expect(undocumented, 'cases of statuses the document does not have').toEqual([]);
    const routes = new Set([...pairs].map((pair) => pair.replace(/ \d{3}$/, '')));
    console.log(
      `contract: ${pairs.size} route × status pairs covered (${routes.size} routes), ` +
        `${recorded.length} exchanges judged by Prism, ${CASES.length} cases`,
    );
  });
});
