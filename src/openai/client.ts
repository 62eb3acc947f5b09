import { randomUUID } from 'node:crypto';
import { header, type AttemptFailure, type CallContext, type UpstreamAnswer, type UpstreamTransport } from './transport.js';
import { UpstreamError } from './upstream-error.js';

export interface MintedSecret {
  value: string;
  /** Unix seconds. */
  expiresAt: number;
  sessionId: string;
}

/** A relayed call as OpenAI created it. */
export interface CreatedCall {
  callId: string;
  /** The SDP answer for the browser. */
  answerSdp: string;
}

/**
 * One upstream check: ok; unauthorized (OpenAI answered 401/403: the key is bad or revoked, or may
 * not use the Realtime API); unreachable (no answer in time, a network error, or any other status).
 */
export type UpstreamCheck = 'ok' | 'unauthorized' | 'unreachable';

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

/**
 * The readiness check's body: a secret that would expire 1 s after it is made, below OpenAI's
 * minimum of 10 s (RealtimeCreateClientSecretRequest), so OpenAI refuses it (400) and mints nothing.
 */
export const READINESS_PROBE_BODY = JSON.stringify({ expires_after: { anchor: 'created_at', seconds: 1 } });

/** The OpenAI endpoints the service uses, over the one retrying transport. */
export class OpenAIClient {
  constructor(private readonly transport: UpstreamTransport) {}

  /** The longest one request may take, retries included. */
  get deadlineMs(): number {
    return this.transport.deadlineMs;
  }

  /** POST /realtime/client_secrets with a pre-serialized body. */
  async createClientSecret(body: string, ctx: CallContext): Promise<MintedSecret> {
    const answer = await this.transport.request(
      { operation: 'client_secrets', path: '/realtime/client_secrets', body, contentType: 'application/json' },
      ctx,
    );
    return parseMintAnswer(answer.text);
  }

  /**
   * POST /realtime/calls: OpenAI answers the browser's SDP offer and names the call (Location).
   * `onLateCall`: a call OpenAI created after the attempt timed out (the caller already got a 504),
   * for the caller to hang up; listened for up to LATE_ANSWER_MS.
   */
  async createCall(sdp: string, session: object, ctx: CallContext, onLateCall?: (call: CreatedCall) => void): Promise<CreatedCall> {
    const { body, contentType } = multipartBody([
      { name: 'sdp', contentType: 'application/sdp', value: sdp },
      { name: 'session', contentType: 'application/json', value: JSON.stringify(session) },
    ]);
    const onLateAnswer = onLateCall
      ? (answer: UpstreamAnswer) => {
          const call = createdCall(answer);
          if (call) onLateCall(call);
        }
      : undefined;
    const answer = await this.transport.request(
      { operation: 'calls', path: '/realtime/calls', body, contentType, mayRetry: retryWithoutDuplicates, onLateAnswer },
      ctx,
    );
    const call = createdCall(answer);
    if (!call) throw new UpstreamError('unusable', 'OpenAI answered 2xx without a Location or an SDP answer', { attempts: 1 });
    return call;
  }

  /** POST /realtime/calls/{id}/hangup, retried (it is idempotent). 'already_over': OpenAI knows no such live call. */
  async hangup(callId: string, ctx: CallContext): Promise<'ended' | 'already_over'> {
    const answer = await this.transport.request(
      { operation: 'hangup', path: `/realtime/calls/${encodeURIComponent(callId)}/hangup`, acceptStatus: [404] },
      ctx,
    );
    return answer.status === 404 ? 'already_over' : 'ended';
  }

  /**
   * Is OpenAI there, and may our key mint? One POST /realtime/client_secrets, short timeout, no
   * retries, with READINESS_PROBE_BODY, which OpenAI must refuse: 400 means the key authenticated
   * and has the Realtime permission, and nothing was created.
   *
   * Not GET /models: a least-privilege restricted key (Realtime only) has no "List models"
   * permission, and OpenAI answers it 401 `missing_scope` ("Missing scopes: api.model.read"),
   * which would fail readiness for a key that mints fine. What OpenAI's docs and reports show
   * (checked before choosing): a bad or revoked key gets 401 `invalid_api_key`; a restricted key
   * without an endpoint's permission gets 401 `missing_scope` ("You have insufficient permissions
   * for this operation. Missing scopes: ..."); a body error is 400 `invalid_request_error`. The
   * order of the checks is not documented; every report shows key and permission errors ahead of the
   * body (were it ever the other way, a key without Realtime would read ready and its mints would
   * fail 502, counted in the refusals). client_secrets has no required field (an empty body would
   * mint a secret), so the probe sends an out-of-range TTL instead.
   */
  async checkHealth(timeoutMs: number): Promise<UpstreamCheck> {
    const status = await this.transport.probe('/realtime/client_secrets', { authorized: true, timeoutMs, json: READINESS_PROBE_BODY });
    // A 2xx would mean OpenAI took the body after all: the key may mint just the same.
    if (status === 400 || (status !== undefined && status >= 200 && status < 300)) return 'ok';
    // OpenAI is up and says no to this key (bad, revoked, or without the Realtime permission).
    return status === 401 || status === 403 ? 'unauthorized' : 'unreachable';
  }
}

/** A 2xx of POST /realtime/calls: the call id from Location and the SDP answer, or undefined. */
function createdCall(answer: UpstreamAnswer): CreatedCall | undefined {
  const callId = header(answer.headers, 'location')?.split('/').pop();
  return callId && SDP_ANSWER.test(answer.text) ? { callId, answerSdp: answer.text } : undefined;
}

/** OpenAI's 200 must carry a secret, its expiry and a session id, or it is of no use. */
function parseMintAnswer(text: string): MintedSecret {
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
