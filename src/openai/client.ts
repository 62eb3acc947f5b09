import { randomUUID } from 'node:crypto';
import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import type { FastifyBaseLogger } from 'fastify';
import { scrubSecrets } from './sanitize.js';
import { UpstreamError, type UpstreamFailureKind } from './upstream-error.js';

export interface MintedSecret {
  value: string;
  /** Unix seconds. */
  expiresAt: number;
  sessionId: string;
}

/**
 * One upstream check: ok; unauthorized (OpenAI answered 401/403: the key is bad or revoked);
 * unreachable (no answer in time, a network error, or any other status).
 */
export type UpstreamCheck = 'ok' | 'unauthorized' | 'unreachable';

export interface OpenAIClientOptions {
  baseUrl: string;
  apiKey: string;
  timeoutMs: number;
  maxRetries: number;
  /** Backoff before retry n (0-based) is uniform in [0, min(cap, base * 2^n)): "full jitter". */
  backoffBaseMs?: number;
  backoffCapMs?: number;
  random?: () => number;
  /** Observes every attempt: for the upstream latency histogram. */
  onAttempt?: (operation: string, outcome: string, seconds: number) => void;
}

/** A relayed call as OpenAI created it. */
export interface CreatedCall {
  callId: string;
  /** The SDP answer for the browser. */
  answerSdp: string;
}

export interface CallContext {
  log: FastifyBaseLogger;
}

const RETRYABLE_STATUS = new Set([408, 409, 429]);
const MAX_BODY_BYTES = 1 << 20;
// Below the undici pool's keepAliveTimeout (30 s), so an idle connection is reused, not dropped.
const KEEP_WARM_MS = 20_000;

export interface AttemptFailure {
  kind: UpstreamFailureKind;
  retryable: boolean;
  /** False only when the request certainly never reached OpenAI (connection refused, connect timeout). */
  sent: boolean;
  message: string;
  status?: number;
  retryAfterMs?: number;
  openaiRequestId?: string;
}

class AttemptError extends Error {
  constructor(readonly failure: AttemptFailure) {
    super(failure.message);
  }
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
}

/** retry-after-ms (OpenAI's) wins over Retry-After (seconds or an HTTP date). */
export function retryAfterMs(
  headers: Record<string, string | string[] | undefined>,
  now: number,
): number | undefined {
  const rawMs = header(headers, 'retry-after-ms');
  if (rawMs !== undefined && rawMs.trim() !== '') {
    const ms = Number(rawMs);
    if (Number.isFinite(ms) && ms >= 0) return ms;
  }
  const raw = header(headers, 'retry-after');
  if (raw === undefined) return undefined;
  const seconds = Number(raw);
  if (raw.trim() !== '' && Number.isFinite(seconds) && seconds >= 0) return seconds * 1000;
  const date = Date.parse(raw);
  return Number.isNaN(date) ? undefined : Math.max(0, date - now);
}

function openaiErrorText(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: { message?: unknown; code?: unknown; type?: unknown } | string };
    const e = parsed.error;
    if (typeof e === 'string') return e;
    if (e && typeof e === 'object') {
      return [e.type, e.code, e.message].filter((part) => typeof part === 'string').join(': ');
    }
    // Re-serialized, so \u escapes are decoded and the scrubber sees the text as it reads.
    return JSON.stringify(parsed);
  } catch {
    // not JSON: log a short slice of the raw text below
  }
  return body;
}

const NOT_SENT_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH']);

function classifyNetworkError(error: unknown, timedOut: boolean): AttemptFailure {
  if (timedOut) return { kind: 'timeout', retryable: true, sent: true, message: 'attempt timed out' };
  const code = (error as { code?: string }).code ?? '';
  if (error instanceof undiciErrors.ConnectTimeoutError) {
    return { kind: 'timeout', retryable: true, sent: false, message: `connect timed out (${code})` };
  }
  if (
    error instanceof undiciErrors.HeadersTimeoutError ||
    error instanceof undiciErrors.BodyTimeoutError ||
    code === 'ETIMEDOUT'
  ) {
    return { kind: 'timeout', retryable: true, sent: true, message: `timed out (${code})` };
  }
  return {
    kind: 'unreachable',
    retryable: true,
    sent: !NOT_SENT_CODES.has(code),
    message: `network error (${code || (error as Error).name})`,
  };
}

/** One request to OpenAI, as `call()` makes it (with its retries). */
interface UpstreamRequest {
  /** Label of the latency histogram. */
  operation: string;
  path: string;
  body?: string | Buffer;
  contentType?: string;
  /** Statuses that are an answer, not a failure (a hangup's 404: already over). */
  acceptStatus?: readonly number[];
  /** Whether a failed attempt may be made again; default: whenever the failure is transient. */
  mayRetry?: (failure: AttemptFailure) => boolean;
}

interface UpstreamAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/**
 * A second attempt at creating a call must not create a second call: retry only when the first
 * attempt never reached OpenAI, or when OpenAI said 429 (it created nothing).
 */
const retryWithoutDuplicates = (failure: AttemptFailure) => failure.status === 429 || !failure.sent;

const SDP_ANSWER = /^v=0/;

/** A multipart/form-data body of text parts, each with its own content type. */
function multipartBody(parts: { name: string; contentType: string; value: string }[]) {
  const boundary = `parker-${randomUUID()}`;
  const chunks = parts.map(
    (part) =>
      `--${boundary}\r\nContent-Disposition: form-data; name="${part.name}"\r\n` +
      `Content-Type: ${part.contentType}\r\n\r\n${part.value}\r\n`,
  );
  return { body: Buffer.from(`${chunks.join('')}--${boundary}--\r\n`), contentType: `multipart/form-data; boundary=${boundary}` };
}

/** The body as text, refusing more than MAX_BODY_BYTES (a sane OpenAI answer is a few KiB). */
async function readCapped(body: Dispatcher.ResponseData['body'], contentLength: string | undefined): Promise<string> {
  if (contentLength !== undefined && Number(contentLength) <= MAX_BODY_BYTES) return body.text();
  let text = '';
  let size = 0;
  for await (const chunk of body) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) {
      body.destroy();
      break;
    }
    text += (chunk as Buffer).toString('utf8');
  }
  return text;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The one HTTP client to OpenAI: a keep-alive undici Pool, per-attempt timeouts, retries with
 * full-jitter backoff that honour Retry-After, and an overall deadline for each call.
 */
export class OpenAIClient {
  private readonly pool: Pool;
  private readonly pathPrefix: string;
  private readonly authorization: string;
  private readonly backoffBaseMs: number;
  private readonly backoffCapMs: number;
  private readonly random: () => number;
  /** Attempts in flight, aborted when a shutdown's time is up: they end with an answer, not a cut. */
  private readonly inFlight = new Set<AbortController>();
  private drained = false;
  private drainDeadline = Number.POSITIVE_INFINITY;
  private keepWarmTimer: NodeJS.Timeout | undefined;
  private lastCallAt = 0;

  constructor(private readonly options: OpenAIClientOptions) {
    const url = new URL(options.baseUrl);
    this.pathPrefix = url.pathname.replace(/\/+$/, '');
    this.pool = new Pool(url.origin, {
      connections: 128,
      pipelining: 1,
      keepAliveTimeout: 30_000,
      connect: { timeout: options.timeoutMs },
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    });
    this.authorization = `Bearer ${options.apiKey}`;
    this.backoffBaseMs = options.backoffBaseMs ?? 200;
    this.backoffCapMs = options.backoffCapMs ?? 2_000;
    this.random = options.random ?? Math.random;
  }

  /** The longest one call may take: every attempt timing out, plus the longest backoffs. */
  get deadlineMs(): number {
    return (this.options.maxRetries + 1) * this.options.timeoutMs + this.options.maxRetries * this.backoffCapMs;
  }

  /** POST /realtime/client_secrets with a pre-serialized body. */
  async createClientSecret(body: string, ctx: CallContext): Promise<MintedSecret> {
    const answer = await this.call(
      { operation: 'client_secrets', path: '/realtime/client_secrets', body, contentType: 'application/json' },
      ctx,
    );
    return parseMintAnswer(answer.text);
  }

  /** POST /realtime/calls: OpenAI answers the browser's SDP offer and names the call (Location). */
  async createCall(sdp: string, session: object, ctx: CallContext): Promise<CreatedCall> {
    const { body, contentType } = multipartBody([
      { name: 'sdp', contentType: 'application/sdp', value: sdp },
      { name: 'session', contentType: 'application/json', value: JSON.stringify(session) },
    ]);
    const answer = await this.call(
      { operation: 'calls', path: '/realtime/calls', body, contentType, mayRetry: retryWithoutDuplicates },
      ctx,
    );
    const callId = header(answer.headers, 'location')?.split('/').pop();
    if (!callId || !SDP_ANSWER.test(answer.text)) {
      throw new UpstreamError('unusable', 'OpenAI answered 2xx without a Location or an SDP answer', { attempts: 1 });
    }
    return { callId, answerSdp: answer.text };
  }

  /** POST /realtime/calls/{id}/hangup, retried (it is idempotent). 'already_over': OpenAI knows no such live call. */
  async hangup(callId: string, ctx: CallContext): Promise<'ended' | 'already_over'> {
    const answer = await this.call(
      { operation: 'hangup', path: `/realtime/calls/${encodeURIComponent(callId)}/hangup`, acceptStatus: [404] },
      ctx,
    );
    return answer.status === 404 ? 'already_over' : 'ended';
  }

  /** GET /models with a short timeout and no retries: is OpenAI there and is our key good? */
  async checkHealth(timeoutMs: number): Promise<UpstreamCheck> {
    this.lastCallAt = performance.now();
    try {
      const { statusCode, body } = await this.pool.request({
        method: 'GET',
        path: `${this.pathPrefix}/models`,
        headers: { authorization: this.authorization },
        signal: AbortSignal.timeout(timeoutMs),
      });
      await body.dump();
      if (statusCode >= 200 && statusCode < 300) return 'ok';
      // OpenAI is up and says no to this key (bad or revoked): readiness fails on it.
      return statusCode === 401 || statusCode === 403 ? 'unauthorized' : 'unreachable';
    } catch {
      return 'unreachable';
    }
  }

  /**
   * Shutdown has begun: every call must be over within `withinMs` (no retry past it, the attempt in
   * flight aborted then), so its client gets an answer before the process exits.
   */
  drain(withinMs: number): void {
    this.drainDeadline = performance.now() + withinMs;
    setTimeout(() => {
      this.drained = true;
      for (const controller of this.inFlight) controller.abort();
    }, withinMs).unref();
  }

  /**
   * Keeps a connection to OpenAI open so no mint pays a TLS handshake (100+ ms cold): every
   * KEEP_WARM_MS with no call out, below the pool's 30 s keep-alive, it sends a request that
   * carries no key (OpenAI answers 401: no quota, no usage). At boot the readiness check (GET
   * /models with the key) opens the first connection; this keeps it.
   */
  keepWarm(): void {
    this.keepWarmTimer ??= setInterval(() => {
      if (performance.now() - this.lastCallAt >= KEEP_WARM_MS) void this.touch();
    }, KEEP_WARM_MS).unref();
  }

  private async touch(): Promise<void> {
    this.lastCallAt = performance.now();
    try {
      const { body } = await this.pool.request({
        // GET: undici closes a connection after a HEAD (servers that send a body anyway).
        method: 'GET',
        path: `${this.pathPrefix}/models`,
        signal: AbortSignal.timeout(Math.min(5_000, this.options.timeoutMs)),
      });
      await body.dump();
    } catch {
      // Nothing to do: the next call opens its own connection, as it would have anyway.
    }
  }

  async close(): Promise<void> {
    clearInterval(this.keepWarmTimer);
    await this.pool.close();
  }

  private async call(request: UpstreamRequest, ctx: CallContext): Promise<UpstreamAnswer> {
    // Deadlines on the monotonic clock: a wall-clock jump must not cut or stretch a call.
    const ownDeadline = performance.now() + this.deadlineMs;
    const attempts = this.options.maxRetries + 1;
    let last: AttemptFailure | undefined;

    for (let attempt = 0; attempt < attempts; attempt++) {
      // A shutdown that begins mid-call brings the deadline forward.
      const deadline = Math.min(ownDeadline, this.drainDeadline);
      if (attempt > 0 && last) {
        const backoff = this.random() * Math.min(this.backoffCapMs, this.backoffBaseMs * 2 ** (attempt - 1));
        const wait = Math.max(backoff, last.retryAfterMs ?? 0);
        if (performance.now() + wait >= deadline) {
          // Waiting as OpenAI asks would pass the deadline: say so now rather than hang.
          throw this.failure(last, attempt, Math.ceil(wait / 1000));
        }
        ctx.log.debug({ attempt, wait_ms: Math.round(wait) }, 'retrying OpenAI call');
        await sleep(wait);
      }
      const remaining = deadline - performance.now();
      try {
        return await this.attempt(request, Math.min(this.options.timeoutMs, remaining));
      } catch (error) {
        if (!(error instanceof AttemptError)) throw error;
        last = error.failure;
        ctx.log.warn(
          {
            upstream_attempt: attempt + 1,
            upstream_status: last.status,
            upstream_kind: last.kind,
            openai_request_id: last.openaiRequestId,
            openai_error: scrubSecrets(last.message),
          },
          'OpenAI call failed',
        );
        const mayRetry = last.retryable && (request.mayRetry?.(last) ?? true);
        if (!mayRetry) throw this.failure(last, attempt + 1);
      }
    }
    throw this.failure(last as AttemptFailure, attempts);
  }

  private failure(last: AttemptFailure, attempts: number, retryAfterSeconds?: number): UpstreamError {
    const fromHeader = last.retryAfterMs !== undefined ? Math.max(1, Math.ceil(last.retryAfterMs / 1000)) : undefined;
    return new UpstreamError(last.kind, scrubSecrets(last.message), {
      status: last.status,
      attempts,
      retryAfterSeconds: retryAfterSeconds ?? fromHeader,
      openaiRequestId: last.openaiRequestId,
    });
  }

  private async attempt(request: UpstreamRequest, timeoutMs: number): Promise<UpstreamAnswer> {
    const started = performance.now();
    this.lastCallAt = started;
    const controller = new AbortController();
    if (this.drained) controller.abort();
    this.inFlight.add(controller);
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      controller.abort();
    }, timeoutMs);
    const observe = (outcome: string) =>
      this.options.onAttempt?.(request.operation, outcome, (performance.now() - started) / 1000);
    try {
      const response = await this.pool.request({
        method: 'POST',
        path: `${this.pathPrefix}${request.path}`,
        headers: request.contentType
          ? { authorization: this.authorization, 'content-type': request.contentType }
          : { authorization: this.authorization },
        body: request.body,
        signal: controller.signal,
      });
      const text = await readCapped(response.body, header(response.headers, 'content-length'));
      const status = response.statusCode;
      observe(String(status));
      if ((status >= 200 && status < 300) || request.acceptStatus?.includes(status)) {
        return { status, headers: response.headers, text };
      }
      const openaiRequestId = header(response.headers, 'x-request-id');
      const retryable = RETRYABLE_STATUS.has(status) || status >= 500;
      throw new AttemptError({
        kind: retryable ? 'overloaded' : 'refused',
        retryable,
        sent: true,
        status,
        message: `HTTP ${status}: ${openaiErrorText(text)}`,
        retryAfterMs: retryAfterMs(response.headers, Date.now()),
        openaiRequestId,
      });
    } catch (error) {
      if (error instanceof AttemptError) throw error;
      const failure: AttemptFailure = this.drained
        ? { kind: 'unreachable', retryable: false, sent: true, message: 'aborted: the service is shutting down' }
        : classifyNetworkError(error, timedOut);
      observe(failure.kind);
      throw new AttemptError(failure);
    } finally {
      clearTimeout(timer);
      this.inFlight.delete(controller);
    }
  }
}

/** OpenAI's 200 must carry a secret, its expiry and a session id, or it is of no use. */
export function parseMintAnswer(text: string): MintedSecret {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new UpstreamError('unusable', 'OpenAI answered 2xx with a body that is not JSON', { attempts: 1 });
  }
  const answer = parsed as { value?: unknown; expires_at?: unknown; session?: { id?: unknown } } | null;
  if (
    !answer ||
    typeof answer.value !== 'string' ||
    answer.value === '' ||
    typeof answer.expires_at !== 'number' ||
    !Number.isFinite(answer.expires_at) ||
    typeof answer.session?.id !== 'string'
  ) {
    throw new UpstreamError('unusable', 'OpenAI answered 2xx without value, expires_at or session.id', {
      attempts: 1,
    });
  }
  return { value: answer.value, expiresAt: answer.expires_at, sessionId: answer.session.id };
}
