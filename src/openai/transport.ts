import { Pool, errors as undiciErrors, type Dispatcher } from 'undici';
import type { FastifyBaseLogger } from 'fastify';
import { upstreamErrorFields, upstreamLogFields, type UpstreamErrorFields } from './upstream-answer.js';
import { UpstreamError, type UpstreamFailureKind } from './upstream-error.js';

export interface TransportOptions {
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

export interface CallContext {
  log: FastifyBaseLogger;
}

const RETRYABLE_STATUS = new Set([408, 409, 429]);
const MAX_BODY_BYTES = 1 << 20;
// Below the undici pool's keepAliveTimeout (30 s), so an idle connection is reused, not dropped.
const KEEP_WARM_MS = 20_000;
/** How long a timed-out request that creates something is still listened to (see onLateAnswer). */
export const LATE_ANSWER_MS = 60_000;

export interface AttemptFailure {
  kind: UpstreamFailureKind;
  retryable: boolean;
  /** False only when the request certainly never reached OpenAI (connection refused, connect timeout). */
  sent: boolean;
  /** The service's own words: never OpenAI's text (that is in `upstream`, reduced). */
  message: string;
  status?: number;
  retryAfterMs?: number;
  /** What of OpenAI's error answer may be logged (identifiers, plain words, a checked request id). */
  upstream?: UpstreamErrorFields;
}

class AttemptError extends Error {
  constructor(readonly failure: AttemptFailure) {
    super(failure.message);
  }
}

export function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
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

/** One request to OpenAI, as `request()` makes it (with its retries). */
export interface UpstreamRequest {
  /** Label of the latency histogram. */
  operation: string;
  path: string;
  body?: string | Buffer;
  contentType?: string;
  /** Statuses that are an answer, not a failure (a hangup's 404: already over). */
  acceptStatus?: readonly number[];
  /** Whether a failed attempt may be made again; default: whenever the failure is transient. */
  mayRetry?: (failure: AttemptFailure) => boolean;
  /**
   * Set for a request that creates something (a call): when an attempt times out, the request is
   * not cut but left to finish for up to LATE_ANSWER_MS, and a 2xx that comes then is handed here
   * (the caller undoes what OpenAI created after we stopped waiting).
   */
  onLateAnswer?: (answer: UpstreamAnswer) => void;
}

export interface UpstreamAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/**
 * One HTTP exchange as an undici dispatch handler: the status, the headers and the body as text,
 * keeping at most MAX_BODY_BYTES (a sane OpenAI answer is a few KiB; past that the rest is not
 * read). No response stream, no AbortSignal: `abort()` cuts it. (Through `pool.request()` a mint
 * paid for a Readable, an async iterator and an abort listener it never needed.)
 */
class Exchange implements Dispatcher.DispatchHandler {
  readonly answer: Promise<UpstreamAnswer>;
  private resolve!: (answer: UpstreamAnswer) => void;
  private reject!: (error: Error) => void;
  private controller: Dispatcher.DispatchController | undefined;
  private abortedWith: Error | undefined;
  private status = 0;
  private headers: Record<string, string | string[] | undefined> = {};
  private readonly chunks: Buffer[] = [];
  private size = 0;

  constructor() {
    this.answer = new Promise<UpstreamAnswer>((resolve, reject) => {
      this.resolve = resolve;
      this.reject = reject;
    });
  }

  /** Cuts the exchange (its answer rejects), whether it has started or not. */
  abort(): void {
    this.abortedWith ??= new undiciErrors.RequestAbortedError();
    this.controller?.abort(this.abortedWith);
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller;
    if (this.abortedWith) controller.abort(this.abortedWith);
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    // 1xx informational answers come first; the final one replaces them.
    this.status = statusCode;
    this.headers = headers;
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.size += chunk.length;
    if (this.size <= MAX_BODY_BYTES) {
      this.chunks.push(chunk);
      return;
    }
    // Too much: answer with what came (its status is what matters) and stop reading.
    this.finish();
    controller.abort(new undiciErrors.ResponseExceededMaxSizeError());
  }

  onResponseEnd(): void {
    this.finish();
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    // After finish() this changes nothing: the answer is already settled.
    this.reject(error);
  }

  private finish(): void {
    const text = this.chunks.length === 1 ? this.chunks[0]!.toString('utf8') : Buffer.concat(this.chunks).toString('utf8');
    this.resolve({ status: this.status, headers: this.headers, text });
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The one HTTP transport to OpenAI: a keep-alive undici Pool, per-attempt timeouts, retries with
 * full-jitter backoff that honour Retry-After, an overall deadline for each call, and shutdown
 * draining. It knows no endpoint: src/openai/client.ts does.
 */
export class UpstreamTransport {
  private readonly pool: Pool;
  private readonly pathPrefix: string;
  private readonly authorization: string;
  private readonly backoffBaseMs: number;
  private readonly backoffCapMs: number;
  private readonly random: () => number;
  /** Attempts in flight, aborted when a shutdown's time is up: they end with an answer, not a cut. */
  private readonly inFlight = new Set<Exchange>();
  private drained = false;
  private drainDeadline = Number.POSITIVE_INFINITY;
  private keepWarmTimer: NodeJS.Timeout | undefined;
  private lastCallAt = 0;

  constructor(private readonly options: TransportOptions) {
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

  /**
   * One request with a short timeout and no retries: the status, or undefined when OpenAI did not
   * answer. A GET, or a POST of `json` when given. With `authorized: false` it carries no key (the
   * keep-warm request: no quota, no usage).
   */
  async probe(path: string, options: { authorized: boolean; timeoutMs: number; json?: string }): Promise<number | undefined> {
    this.lastCallAt = performance.now();
    const headers: Record<string, string> = options.authorized ? { authorization: this.authorization } : {};
    if (options.json !== undefined) headers['content-type'] = 'application/json';
    try {
      const { statusCode, body } = await this.pool.request({
        // GET, not HEAD: undici closes a connection after a HEAD (servers that send a body anyway).
        method: options.json === undefined ? 'GET' : 'POST',
        path: `${this.pathPrefix}${path}`,
        headers,
        body: options.json,
        signal: AbortSignal.timeout(options.timeoutMs),
      });
      await body.dump();
      return statusCode;
    } catch {
      return undefined;
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
      for (const exchange of this.inFlight) exchange.abort();
    }, withinMs).unref();
  }

  /**
   * Keeps a connection to OpenAI open so no mint pays a TLS handshake (100+ ms cold): every
   * KEEP_WARM_MS with no call out, below the pool's 30 s keep-alive, it sends a request that
   * carries no key (OpenAI answers 401: no quota, no usage). At boot the readiness check (with the
   * key) opens the first connection; this keeps it.
   */
  keepWarm(): void {
    this.keepWarmTimer ??= setInterval(() => {
      if (performance.now() - this.lastCallAt >= KEEP_WARM_MS) void this.touch();
    }, KEEP_WARM_MS).unref();
  }

  private async touch(): Promise<void> {
    // Nothing to do on failure: the next call opens its own connection, as it would have anyway.
    await this.probe('/models', { authorized: false, timeoutMs: Math.min(5_000, this.options.timeoutMs) });
  }

  async close(): Promise<void> {
    clearInterval(this.keepWarmTimer);
    await this.pool.close();
  }

  /** One logical request: attempts with backoff until an answer, a final failure or the deadline. */
  async request(request: UpstreamRequest, ctx: CallContext): Promise<UpstreamAnswer> {
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
            ...(last.upstream ? upstreamLogFields(last.upstream) : {}),
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
    return new UpstreamError(last.kind, last.message, {
      status: last.status,
      attempts,
      retryAfterSeconds: retryAfterSeconds ?? fromHeader,
      openaiRequestId: last.upstream?.requestId,
    });
  }

  private async attempt(request: UpstreamRequest, timeoutMs: number): Promise<UpstreamAnswer> {
    const started = performance.now();
    this.lastCallAt = started;
    const listensLate = request.onLateAnswer !== undefined;
    const exchange = this.exchange(request, listensLate ? timeoutMs + LATE_ANSWER_MS : undefined);
    this.inFlight.add(exchange);
    const observe = (outcome: string) =>
      this.options.onAttempt?.(request.operation, outcome, (performance.now() - started) / 1000);
    let timedOut = false;
    let onTimeout: () => void = () => exchange.abort();
    const timer = setTimeout(() => {
      timedOut = true;
      onTimeout();
    }, timeoutMs);
    // A request that creates something is not cut at the timeout: the attempt fails then, the
    // request goes on (bounded) and a late 2xx goes to onLateAnswer.
    const cutOff = listensLate
      ? new Promise<never>((_resolve, reject) => {
          onTimeout = () => reject(new AttemptError(classifyNetworkError(undefined, true)));
        })
      : undefined;
    let detached = false;
    try {
      const answer = await (cutOff ? Promise.race([exchange.answer, cutOff]) : exchange.answer);
      observe(String(answer.status));
      if ((answer.status >= 200 && answer.status < 300) || request.acceptStatus?.includes(answer.status)) return answer;
      throw new AttemptError(this.refusal(answer));
    } catch (error) {
      if (timedOut && cutOff) {
        detached = true;
        this.listenLate(request, exchange);
      }
      if (error instanceof AttemptError) {
        if (timedOut) observe(error.failure.kind);
        throw error;
      }
      const failure: AttemptFailure = this.drained
        ? { kind: 'unreachable', retryable: false, sent: true, message: 'aborted: the service is shutting down' }
        : classifyNetworkError(error, timedOut);
      observe(failure.kind);
      throw new AttemptError(failure);
    } finally {
      clearTimeout(timer);
      if (!detached) this.inFlight.delete(exchange);
    }
  }

  /** Dispatches one HTTP exchange: its answer (status, headers, capped body) or a network error. */
  private exchange(request: UpstreamRequest, timeoutMs: number | undefined): Exchange {
    const exchange = new Exchange();
    // Past the shutdown's deadline nothing more goes out: aborted before it can be written.
    if (this.drained) exchange.abort();
    this.pool.dispatch(
      {
        method: 'POST',
        path: `${this.pathPrefix}${request.path}`,
        headers: request.contentType
          ? { authorization: this.authorization, 'content-type': request.contentType }
          : { authorization: this.authorization },
        body: request.body ?? null,
        // A request listened to past its timeout outlives the pool's own header and body timeouts.
        ...(timeoutMs !== undefined ? { headersTimeout: timeoutMs, bodyTimeout: timeoutMs } : {}),
      },
      exchange,
    );
    return exchange;
  }

  /** A non-2xx answer as an attempt failure: never OpenAI's text as is (it may echo the key, issue 16). */
  private refusal(answer: UpstreamAnswer): AttemptFailure {
    const { status } = answer;
    const retryable = RETRYABLE_STATUS.has(status) || status >= 500;
    const upstream = upstreamErrorFields(answer.text, answer.headers);
    return {
      kind: retryable ? 'overloaded' : 'refused',
      retryable,
      sent: true,
      status,
      message: `OpenAI answered ${status}${upstream.code ? ` (${upstream.code})` : ''}`,
      retryAfterMs: retryAfterMs(answer.headers, Date.now()),
      upstream,
    };
  }

  /** After the timeout: waits up to LATE_ANSWER_MS more for the answer, and hands a 2xx over. */
  private listenLate(request: UpstreamRequest, exchange: Exchange): void {
    const giveUp = setTimeout(() => exchange.abort(), LATE_ANSWER_MS);
    giveUp.unref();
    exchange.answer
      .then((answer) => {
        if (answer.status >= 200 && answer.status < 300) request.onLateAnswer?.(answer);
      })
      .catch(() => undefined)
      .finally(() => {
        clearTimeout(giveUp);
        this.inFlight.delete(exchange);
      });
  }
}
