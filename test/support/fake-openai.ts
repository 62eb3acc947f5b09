import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket as ServerSocket } from 'ws';
import { validateCallCreateRequest, validateClientSecretRequest, validateServerEvent, validateSessionUpdate } from './openai-schema.js';

/** What the fake does with the next POST /realtime/client_secrets. */
export type Behaviour =
  | { kind: 'ok'; delayMs?: number }
  | { kind: 'status'; status: number; body?: unknown; headers?: Record<string, string>; delayMs?: number }
  | { kind: 'raw'; status: number; body: string; contentType?: string; headers?: Record<string, string> }
  /** Accepts the request and never answers. */
  | { kind: 'hang' }
  /** Sends 200 headers and the start of a body, then nothing more. */
  | { kind: 'stall-body' }
  /** Destroys the connection without an answer. */
  | { kind: 'reset' };

export interface RecordedRequest {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: unknown;
  /** Problems found validating the body against OpenAI's schema (empty: valid). */
  schemaErrors: string[];
  at: number;
}

/** A call the fake created (POST /v1/realtime/calls). */
export interface FakeCall {
  callId: string;
  sdp: string;
  session: unknown;
  /**
   * The session as OpenAI holds it now (RealtimeSessionCreateResponseGA): the call's session, then
   * every session.update applied (the service's over a sideband, or the page's via pushSessionUpdated).
   */
  current: Record<string, unknown>;
  /** Date.now() when created. */
  createdAt: number;
  /** Date.now() of the first successful hangup. */
  hungUpAt?: number;
}

/** Every POST /v1/realtime/calls/{id}/hangup that reached the fake (404s and scripted failures included). */
export interface RecordedHangup {
  callId: string;
  /** Date.now() on arrival. */
  at: number;
  status: number;
}

/** How the fake meets a new sideband (WebSocket on /v1/realtime?call_id=...) while `refuseSidebands` is set. */
export type SidebandRefusal = { kind: 'status'; status: number } | { kind: 'hang' };

/** One WebSocket upgrade on /v1/realtime that reached the fake, accepted (101) or not. */
export interface RecordedSidebandUpgrade {
  callId: string | undefined;
  authorization: string | undefined;
  /** 101 when accepted; 0 when left hanging. */
  status: number;
  at: number;
}

/** One event the service sent over a sideband. */
export interface RecordedSidebandEvent {
  callId: string;
  raw: string;
  event: unknown;
  /** Problems found validating it against RealtimeClientEventSessionUpdate (empty: valid). */
  schemaErrors: string[];
  at: number;
}

/** An event the fake sends on a sideband. */
type ServerEvent = { type: string; [field: string]: unknown };

/** Realtime usage as `response.done` carries it (RealtimeResponse.usage). */
export interface FakeUsage {
  total_tokens?: number;
  input_tokens?: number;
  output_tokens?: number;
  input_token_details?: Record<string, unknown>;
  output_token_details?: Record<string, unknown>;
}

/** A syntactically valid SDP answer (audio + data channel), for tests that do not run a real peer. */
export const CANNED_SDP_ANSWER = [
  'v=0',
  'o=- 4227147428 1719357865 IN IP4 127.0.0.1',
  's=-',
  't=0 0',
  'a=group:BUNDLE 0 1',
  'a=msid-semantic:WMS *',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111',
  'c=IN IP4 0.0.0.0',
  'a=mid:0',
  'a=ice-ufrag:fake',
  'a=ice-pwd:fakefakefakefakefakefake',
  'a=fingerprint:sha-256 00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF',
  'a=setup:active',
  'a=sendrecv',
  'a=rtcp-mux',
  'a=rtpmap:111 opus/48000/2',
  'm=application 9 UDP/DTLS/SCTP webrtc-datachannel',
  'c=IN IP4 0.0.0.0',
  'a=mid:1',
  'a=sctp-port:5000',
  '',
].join('\r\n');

export const FAKE_API_KEY = 'sk-test-fake-0123456789abcdefghij';

/** An id in OpenAI's shape (req_ + 32 hex digits): the service logs no other. */
const openaiRequestId = () => `req_${randomBytes(16).toString('hex')}`;

const isPlainObject = (value: unknown): value is Record<string, unknown> => typeof value === 'object' && value !== null && !Array.isArray(value);

/**
 * A session.update applied as OpenAI documents it: only the fields present change (objects merged
 * field by field, unless the new one names its own `type`), `null` clears a field, `type` names the
 * kind of session and `model` cannot change.
 */
export function applySessionChange(current: Record<string, unknown>, change: Record<string, unknown>, top = true): Record<string, unknown> {
  const next = { ...current };
  for (const [field, value] of Object.entries(change)) {
    if (top && (field === 'type' || field === 'model')) continue;
    if (value === null) delete next[field];
    // An object that names its `type` (a format, a turn detection) is a new one, not a change.
    else if (isPlainObject(value) && isPlainObject(next[field]) && !('type' in value)) next[field] = applySessionChange(next[field], value, false);
    else next[field] = value;
  }
  return next;
}

/**
 * What a key may do at the fake, as OpenAI's key permissions allow: all; a least-privilege
 * restricted key with the Realtime permission and not "List models"; a restricted key without the
 * Realtime permission; a revoked key (OpenAI then answers as for an unknown key).
 */
export type KeyAccess = 'all' | 'realtime_only' | 'no_realtime' | 'revoked';

function openaiError(message: string, type: string, code: string | null, param: string | null = null) {
  return { error: { message, type, param, code } };
}

/** OpenAI's answer to a restricted key without the permission an endpoint needs. */
function missingScope(scope: string) {
  return openaiError(
    `You have insufficient permissions for this operation. Missing scopes: ${scope}. Check that you have the correct role in your ` +
      "organization (Reader, Writer, Owner) and project (Viewer, Member, Owner), and if you're using a restricted API key, that it has the necessary scopes.",
    'invalid_request_error',
    'missing_scope',
  );
}

/** The service's readiness check: no session, a TTL under OpenAI's minimum of 10 s. */
function isReadinessProbe(body: unknown): boolean {
  const request = body as { session?: unknown; expires_after?: { seconds?: unknown } } | null;
  const seconds = request?.expires_after?.seconds;
  return typeof request === 'object' && request !== null && request.session === undefined && typeof seconds === 'number' && seconds < 10;
}

/** A real HTTP server on loopback that behaves like OpenAI's client-secret endpoint. */
export class FakeOpenAI {
  readonly requests: RecordedRequest[] = [];
  /** GET /models with a key the fake accepts, and what it answers them (unless the key may not list models). */
  modelsCalls = 0;
  modelsStatus = 200;
  /** The service's readiness checks (POST /realtime/client_secrets that OpenAI must refuse), never in `requests`. */
  readinessChecks = 0;
  /** Answer the readiness check with this status instead of OpenAI's 400 (an overloaded or refusing OpenAI). */
  readinessStatus: number | undefined;
  /** Keys the fake knows, and what each may do (its own key: all). Anything else is an unknown key. */
  readonly keys = new Map<string, KeyAccess>();
  /** Added before every answer, scripted or not. */
  latencyMs = 0;
  /** Plus a uniform random [0, latencyJitterMs) on top of latencyMs: an upstream that varies (benchmark). */
  latencyJitterMs = 0;
  /** TCP connections accepted, and answers sent: show whether the service warmed one up before its first mint. */
  connections = 0;
  answered = 0;
  /** Requests that have arrived (any path), counted before the latency: one in flight shows here at once. */
  arrived = 0;
  private keepRequests = true;
  private readonly queue: Behaviour[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly hanging = new Set<ServerResponse>();
  private readonly waiters: { count: number; resolve: () => void }[] = [];
  private minted = 0;
  /** The key the fake accepts (FAKE_API_KEY unless a test brings a realistic one). */
  private apiKey = FAKE_API_KEY;
  /** Calls created, by id. */
  readonly calls = new Map<string, FakeCall>();
  readonly hangups: RecordedHangup[] = [];
  /**
   * Answers a call's SDP offer. Default: a canned answer. A browser test can answer with a real
   * RTCPeerConnection instead (e.g. in Chromium through playwright), so the connect completes.
   */
  answerSdp: (offer: string) => Promise<string> = async () => CANNED_SDP_ANSWER;
  /** Every upgrade on /v1/realtime, every event the service sent on a sideband, every event pushed to one. */
  readonly sidebandUpgrades: RecordedSidebandUpgrade[] = [];
  readonly sidebandReceived: RecordedSidebandEvent[] = [];
  readonly sidebandSent: { callId: string; event: unknown }[] = [];
  /** While set, new sidebands are refused (or left hanging); open ones stay. */
  refuseSidebands: SidebandRefusal | undefined;
  private readonly sidebands = new Map<string, Set<ServerSocket>>();
  private readonly webSockets = new WebSocketServer({ noServer: true });
  private serverEvents = 0;
  private readonly callQueue: Behaviour[] = [];
  private readonly hangupQueue: Behaviour[] = [];
  private readonly hangupQueues = new Map<string, Behaviour[]>();
  private callCount = 0;

  private constructor(
    private readonly server: Server,
    readonly baseUrl: string,
  ) {}

  /** keepRequests: false for long benchmark runs (nothing is recorded, so memory stays flat). */
  static async start(
    options: { latencyMs?: number; latencyJitterMs?: number; port?: number; keepRequests?: boolean; apiKey?: string } = {},
  ): Promise<FakeOpenAI> {
    const server = createServer();
    server.keepAliveTimeout = 60_000;
    server.listen(options.port ?? 0, '127.0.0.1');
    await once(server, 'listening');
    const { port } = server.address() as AddressInfo;
    const fake = new FakeOpenAI(server, `http://127.0.0.1:${port}/v1`);
    fake.latencyMs = options.latencyMs ?? 0;
    fake.latencyJitterMs = options.latencyJitterMs ?? 0;
    fake.keepRequests = options.keepRequests ?? true;
    fake.apiKey = options.apiKey ?? FAKE_API_KEY;
    fake.keys.set(fake.apiKey, 'all');
    server.on('connection', (socket) => {
      fake.sockets.add(socket);
      fake.connections += 1;
      socket.on('close', () => fake.sockets.delete(socket));
    });
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => fake.upgrade(req, socket, head));
    server.on('request', (req, res) => {
      fake.arrived += 1;
      res.on('finish', () => (fake.answered += 1));
      fake.handle(req, res).catch((error: unknown) => {
        res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(`fake OpenAI failed: ${String(error)}`);
      });
    });
    return fake;
  }

  /** Behaviours for the next mint calls, in order; after them every call succeeds. */
  script(...behaviours: Behaviour[]): void {
    this.queue.push(...behaviours);
  }

  /** Behaviours for the next POST /v1/realtime/calls, in order ('ok', 'status', 'hang', 'reset', ...). */
  scriptCalls(...behaviours: Behaviour[]): void {
    this.callQueue.push(...behaviours);
  }

  /** Behaviours for the next hangups, in order ('status' to fail, 'hang', 'reset'); then each succeeds. */
  scriptHangups(...behaviours: Behaviour[]): void {
    this.hangupQueue.push(...behaviours);
  }

  /** Behaviours for the next hangups of this call only: a retried hangup of another call cannot take them. */
  scriptHangupsOf(callId: string, ...behaviours: Behaviour[]): void {
    this.hangupQueues.set(callId, [...(this.hangupQueues.get(callId) ?? []), ...behaviours]);
  }

  get callRequests(): RecordedRequest[] {
    return this.requests.filter((r) => r.path === '/v1/realtime/calls');
  }

  get mintRequests(): RecordedRequest[] {
    return this.requests.filter((r) => r.path === '/v1/realtime/client_secrets');
  }

  /** Resolves once `count` mint requests have arrived (already, or later). */
  waitForMintRequests(count: number): Promise<void> {
    if (this.mintRequests.length >= count) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push({ count, resolve }));
  }

  /** Sidebands open now, for one call or all. */
  sidebandsOpen(callId?: string): number {
    if (callId !== undefined) return this.sidebands.get(callId)?.size ?? 0;
    let open = 0;
    for (const set of this.sidebands.values()) open += set.size;
    return open;
  }

  /** Sends `response.done` with this usage on every sideband of the call (a valid event, checked). */
  pushResponseDone(callId: string, usage: FakeUsage | undefined, status = 'completed'): void {
    const id = this.nextEventId();
    const response: Record<string, unknown> = { object: 'realtime.response', id: `resp_${id}`, status, output: [], conversation_id: `conv_${callId}` };
    if (usage !== undefined) response.usage = usage;
    this.send(callId, { type: 'response.done', event_id: `event_${id}`, response });
  }

  /** The page changed the session over its data channel: OpenAI applies it and says so on the sideband. */
  pushSessionUpdated(callId: string, change: Record<string, unknown>): void {
    const call = this.liveCall(callId);
    call.current = applySessionChange(call.current, change);
    this.send(callId, { type: 'session.updated', event_id: `event_${this.nextEventId()}`, session: call.current });
  }

  /** Sends a text frame as is, past every check (garbage on purpose). */
  pushRaw(callId: string, text: string): void {
    for (const socket of this.sidebands.get(callId) ?? []) socket.send(text);
  }

  /** Cuts the sidebands (of one call, or all) without a closing handshake, as a lost connection does. */
  dropSidebands(callId?: string): void {
    for (const [id, set] of this.sidebands) {
      if (callId === undefined || id === callId) for (const socket of set) socket.terminate();
    }
  }

  async close(): Promise<void> {
    for (const set of this.sidebands.values()) for (const socket of set) socket.terminate();
    this.webSockets.close();
    for (const res of this.hanging) res.destroy();
    for (const socket of this.sockets) socket.destroy();
    this.server.close();
    await once(this.server, 'close');
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    const latency = this.latencyMs + Math.random() * this.latencyJitterMs;
    if (latency > 0) await new Promise((r) => setTimeout(r, latency));

    // As OpenAI's does, the calls endpoint answers pages: a browser POSTs its offer there with a client secret.
    if (req.headers.origin !== undefined) {
      res.setHeader('access-control-allow-origin', req.headers.origin);
      res.setHeader('access-control-expose-headers', 'Location');
      res.setHeader('vary', 'Origin');
    }
    if (req.method === 'OPTIONS') {
      res.writeHead(204, { 'access-control-allow-methods': 'POST', 'access-control-allow-headers': 'Authorization, Content-Type', 'access-control-max-age': '600' });
      return void res.end();
    }
    // A secret this fake minted (ek_fake...) opens a call, as a client secret does at OpenAI.
    if (req.method === 'POST' && path === '/v1/realtime/calls' && /^Bearer ek_fake\w+$/.test(req.headers.authorization ?? '')) {
      return this.createCallWithSecret(req, res, text);
    }
    const bearer = /^Bearer (.+)$/.exec(req.headers.authorization ?? '')?.[1];
    const access = bearer === undefined ? undefined : this.keys.get(bearer);
    if (access === undefined || access === 'revoked') {
      return this.json(res, 401, openaiError('Incorrect API key provided: sk-te***ij.', 'invalid_request_error', 'invalid_api_key'));
    }
    if (req.method === 'GET' && path === '/v1/models') {
      this.modelsCalls += 1;
      if (access === 'realtime_only') return this.json(res, 401, missingScope('api.model.read'));
      return this.json(res, this.modelsStatus, { object: 'list', data: [{ id: 'gpt-realtime', object: 'model' }] });
    }
    // The Realtime permission's scope name here is the fake's own: OpenAI's is not documented.
    if (access === 'no_realtime' && path.startsWith('/v1/realtime/')) return this.json(res, 401, missingScope('api.realtime.write'));
    if (path === '/v1/realtime/sessions' || req.headers['openai-beta'] !== undefined) {
      return this.json(res, 400, openaiError('The beta API shape is disabled.', 'invalid_request_error', 'beta_api_shape_disabled'));
    }
    if (req.method === 'POST' && path === '/v1/realtime/calls') return this.createCall(req, res, text);
    const hangup = /^\/v1\/realtime\/calls\/([^/]+)\/hangup$/.exec(path);
    if (req.method === 'POST' && hangup) return this.hangup(req, res, decodeURIComponent(hangup[1] as string));
    if (req.method !== 'POST' || path !== '/v1/realtime/client_secrets') {
      return this.json(res, 404, openaiError('Not found', 'invalid_request_error', null));
    }

    let body: unknown;
    let schemaErrors: string[];
    try {
      body = JSON.parse(text);
      if (isReadinessProbe(body)) {
        this.readinessChecks += 1;
        if (this.readinessStatus !== undefined) return this.json(res, this.readinessStatus, openaiError('Scripted.', 'server_error', null));
        return this.json(
          res,
          400,
          openaiError(
            "Invalid 'expires_after.seconds': integer below minimum value. Expected a value >= 10.",
            'invalid_request_error',
            'integer_below_min_value',
            'expires_after.seconds',
          ),
        );
      }
      // Benchmark mode records nothing and skips the schema check, so the fake costs little CPU.
      schemaErrors = this.keepRequests ? validateClientSecretRequest(body) : [];
    } catch {
      body = text;
      schemaErrors = ['body is not JSON'];
    }
    if (this.keepRequests) {
      this.requests.push({ method: req.method, path, headers: req.headers, body, schemaErrors, at: performance.now() });
    }
    for (const waiter of this.waiters.filter((w) => this.mintRequests.length >= w.count)) {
      this.waiters.splice(this.waiters.indexOf(waiter), 1);
      waiter.resolve();
    }
    if (schemaErrors.length > 0) {
      return this.json(res, 400, openaiError(`Invalid request: ${schemaErrors.join('; ')}`, 'invalid_request_error', 'invalid_value'));
    }

    const behaviour = this.queue.shift() ?? { kind: 'ok' };
    if (behaviour.kind !== 'ok') return this.misbehave(req, res, behaviour);
    if (behaviour.delayMs) await new Promise((r) => setTimeout(r, behaviour.delayMs));
    this.minted += 1;
    const request = body as { expires_after?: { seconds?: number }; session: Record<string, unknown> };
    const ttl = request.expires_after?.seconds ?? 600;
    return this.json(res, 200, {
      value: `ek_fake${String(this.minted).padStart(6, '0')}${Math.random().toString(36).slice(2, 10)}`,
      expires_at: Math.floor(Date.now() / 1000) + ttl,
      session: { ...request.session, object: 'realtime.session', id: `sess_fake${this.minted}` },
    });
  }

  /** POST /v1/realtime/calls: multipart parts `sdp` and `session`, validated against RealtimeCallCreateRequest. */
  private async createCall(req: IncomingMessage, res: ServerResponse, text: string): Promise<void> {
    let body: { sdp?: unknown; session?: unknown } = {};
    let schemaErrors: string[];
    try {
      const form = await new Response(text, { headers: { 'content-type': req.headers['content-type'] ?? '' } }).formData();
      const sdp = form.get('sdp');
      const session = form.get('session');
      body = {
        sdp: typeof sdp === 'string' ? sdp : await sdp?.text(),
        ...(session !== null ? { session: JSON.parse(typeof session === 'string' ? session : await session.text()) as unknown } : {}),
      };
      schemaErrors = validateCallCreateRequest(body);
    } catch (error) {
      schemaErrors = [`body is not multipart/form-data with sdp and session: ${String(error)}`];
    }
    if (this.keepRequests) {
      this.requests.push({ method: 'POST', path: '/v1/realtime/calls', headers: req.headers, body, schemaErrors, at: performance.now() });
    }
    if (schemaErrors.length > 0) {
      return this.json(res, 400, openaiError(`Invalid request: ${schemaErrors.join('; ')}`, 'invalid_request_error', 'invalid_value'));
    }
    const behaviour = this.callQueue.shift() ?? { kind: 'ok' };
    if (behaviour.kind !== 'ok') return this.misbehave(req, res, behaviour);
    if (behaviour.delayMs) await new Promise((r) => setTimeout(r, behaviour.delayMs));
    this.callCount += 1;
    const callId = `rtc_fake${String(this.callCount).padStart(6, '0')}${Math.random().toString(36).slice(2, 8)}`;
    const answer = await this.answerSdp(body.sdp as string);
    const current = { ...(body.session as Record<string, unknown>), object: 'realtime.session', id: `sess_${callId}`, expires_at: Math.floor(Date.now() / 1000) + 3600 };
    this.calls.set(callId, { callId, sdp: body.sdp as string, session: body.session, current, createdAt: Date.now() });
    res.writeHead(201, { 'content-type': 'application/sdp', location: `/v1/realtime/calls/${callId}`, 'x-request-id': openaiRequestId() });
    res.end(answer);
  }

  /** POST /v1/realtime/calls with a client secret: the offer is the whole body (application/sdp). */
  private async createCallWithSecret(req: IncomingMessage, res: ServerResponse, offer: string): Promise<void> {
    const schemaErrors = (req.headers['content-type'] ?? '').startsWith('application/sdp') && offer.startsWith('v=') ? [] : ['body is not an application/sdp offer'];
    if (this.keepRequests) {
      this.requests.push({ method: 'POST', path: '/v1/realtime/calls', headers: req.headers, body: { sdp: offer }, schemaErrors, at: performance.now() });
    }
    if (schemaErrors.length > 0) return this.json(res, 400, openaiError(`Invalid request: ${schemaErrors.join('; ')}`, 'invalid_request_error', 'invalid_value'));
    this.callCount += 1;
    const callId = `rtc_fake${String(this.callCount).padStart(6, '0')}${Math.random().toString(36).slice(2, 8)}`;
    const answer = await this.answerSdp(offer);
    // The secret's session stays with the token flow's page; the fake knows only that a call is on.
    const current = { object: 'realtime.session', id: `sess_${callId}`, expires_at: Math.floor(Date.now() / 1000) + 3600 };
    this.calls.set(callId, { callId, sdp: offer, session: undefined, current, createdAt: Date.now() });
    res.writeHead(201, { 'content-type': 'application/sdp', location: `/v1/realtime/calls/${callId}` });
    res.end(answer);
  }

  /** POST /v1/realtime/calls/{id}/hangup: 200 once for a live call, 404 for an unknown or ended one. */
  private async hangup(req: IncomingMessage, res: ServerResponse, callId: string): Promise<void> {
    const behaviour = this.hangupQueues.get(callId)?.shift() ?? this.hangupQueue.shift() ?? { kind: 'ok' };
    const call = this.calls.get(callId);
    const status = behaviour.kind === 'status' ? behaviour.status : behaviour.kind !== 'ok' ? 0 : call && call.hungUpAt === undefined ? 200 : 404;
    this.hangups.push({ callId, at: Date.now(), status });
    if (behaviour.kind !== 'ok') return this.misbehave(req, res, behaviour);
    if (status === 404) return this.json(res, 404, openaiError(`Call ${callId} not found.`, 'invalid_request_error', 'call_not_found'));
    if (call) call.hungUpAt = Date.now();
    // OpenAI ends the session: its sidebands close.
    for (const socket of this.sidebands.get(callId) ?? []) socket.close(1000, 'call ended');
    res.writeHead(200, { 'x-request-id': openaiRequestId() });
    res.end();
  }

  /**
   * The sideband: a WebSocket on /v1/realtime?call_id=<id>, for a call the fake issued and not yet
   * hung up, with the server key only (OpenAI answers an ephemeral key 404, a wrong key 401).
   */
  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    // After 'upgrade' the HTTP server no longer listens for socket errors: a client that gives up
    // mid-handshake (RST) must not become an uncaught exception.
    socket.on('error', () => socket.destroy());
    const url = new URL(req.url ?? '/', 'http://fake');
    const callId = url.searchParams.get('call_id') ?? undefined;
    const authorization = req.headers.authorization;
    const record = (status: number) => this.sidebandUpgrades.push({ callId, authorization, status, at: Date.now() });
    const refuse = (status: number, message: string, code: string) => {
      record(status);
      const body = JSON.stringify(openaiError(message, 'invalid_request_error', code));
      socket.end(`HTTP/1.1 ${status} Refused\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
    };
    if (url.pathname !== '/v1/realtime' || callId === undefined) return refuse(404, 'Not found', 'not_found');
    if (authorization !== `Bearer ${this.apiKey}`) return refuse(401, 'Incorrect API key provided.', 'invalid_api_key');
    const refusal = this.refuseSidebands;
    if (refusal?.kind === 'hang') {
      record(0);
      return;
    }
    if (refusal?.kind === 'status') return refuse(refusal.status, 'Scripted sideband refusal', 'scripted');
    const call = this.calls.get(callId);
    if (!call || call.hungUpAt !== undefined) return refuse(404, 'No session found for the provided call_id', 'call_id_not_found');
    this.webSockets.handleUpgrade(req, socket, head, (ws) => {
      record(101);
      const set = this.sidebands.get(callId) ?? new Set<ServerSocket>();
      set.add(ws);
      this.sidebands.set(callId, set);
      ws.on('close', () => {
        set.delete(ws);
        if (set.size === 0) this.sidebands.delete(callId);
      });
      ws.on('message', (data: Buffer) => this.sidebandMessage(callId, data.toString('utf8')));
      // A client that vanishes (reset) is what a lost sideband looks like: not a failure of the fake.
      ws.on('error', () => ws.terminate());
      this.sendTo(ws, callId, { type: 'session.created', event_id: `event_${this.nextEventId()}`, session: call.current });
    });
  }

  /** An event from the service: recorded; a valid session.update is applied and answered on every sideband of the call. */
  private sidebandMessage(callId: string, raw: string): void {
    let event: unknown;
    let schemaErrors: string[];
    try {
      event = JSON.parse(raw);
      schemaErrors = validateSessionUpdate(event);
    } catch {
      event = raw;
      schemaErrors = ['not JSON'];
    }
    if (this.keepRequests) this.sidebandReceived.push({ callId, raw, event, schemaErrors, at: Date.now() });
    const call = this.calls.get(callId);
    if (!call) return;
    if (schemaErrors.length > 0) {
      const error = { type: 'invalid_request_error', code: 'invalid_value', message: schemaErrors.join('; '), param: null, event_id: null };
      for (const socket of this.sidebands.get(callId) ?? []) socket.send(JSON.stringify({ type: 'error', event_id: `event_${this.nextEventId()}`, error }));
      return;
    }
    call.current = applySessionChange(call.current, (event as { session: Record<string, unknown> }).session);
    this.send(callId, { type: 'session.updated', event_id: `event_${this.nextEventId()}`, session: call.current });
  }

  private liveCall(callId: string): FakeCall {
    const call = this.calls.get(callId);
    if (!call) throw new Error(`fake OpenAI: no call ${callId}`);
    return call;
  }

  private nextEventId(): string {
    this.serverEvents += 1;
    return `fake${String(this.serverEvents).padStart(8, '0')}`;
  }

  /** Sends a server event to every sideband of the call; a test that builds an invalid one fails here. */
  private send(callId: string, event: ServerEvent): void {
    for (const socket of this.sidebands.get(callId) ?? []) this.sendTo(socket, callId, event);
  }

  private sendTo(socket: ServerSocket, callId: string, event: ServerEvent): void {
    if (this.keepRequests) {
      const problems = validateServerEvent(event);
      if (problems.length > 0) throw new Error(`fake OpenAI: ${event.type} breaks OpenAI's schema: ${problems.join('; ')}`);
      this.sidebandSent.push({ callId, event });
    }
    socket.send(JSON.stringify(event));
  }

  /** A scripted failure: the same repertoire for every endpoint. */
  private async misbehave(req: IncomingMessage, res: ServerResponse, behaviour: Exclude<Behaviour, { kind: 'ok' }>): Promise<void> {
    switch (behaviour.kind) {
      case 'hang':
        this.hanging.add(res);
        res.on('close', () => this.hanging.delete(res));
        return;
      case 'stall-body':
        this.hanging.add(res);
        res.on('close', () => this.hanging.delete(res));
        res.writeHead(200, { 'content-type': 'application/json' });
        res.write('{"value":"ek_');
        return;
      case 'reset':
        req.socket.destroy();
        return;
      case 'raw':
        res.writeHead(behaviour.status, { 'content-type': behaviour.contentType ?? 'application/json', ...behaviour.headers });
        res.end(behaviour.body);
        return;
      case 'status':
        if (behaviour.delayMs) await new Promise((r) => setTimeout(r, behaviour.delayMs));
        return this.json(res, behaviour.status, behaviour.body ?? openaiError('Scripted failure', 'server_error', null), behaviour.headers);
    }
  }

  private json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    res.writeHead(status, { 'content-type': 'application/json', 'x-request-id': openaiRequestId(), ...headers });
    res.end(JSON.stringify(body));
  }
}
