import { AppError } from '../errors.js';

/**
 * How a call to OpenAI failed, in the terms the rest of the service needs:
 * - refused: OpenAI answered 4xx (bad key, not permitted, bad request): retrying will not help.
 * - unusable: a 2xx we cannot use (not JSON, no secret).
 * - overloaded: 408/409/429/5xx, still failing after the retries.
 * - unreachable: connection refused or reset, still failing after the retries.
 * - timeout: no complete answer within the attempt timeout, after the retries.
 */
export type UpstreamFailureKind = 'refused' | 'unusable' | 'overloaded' | 'unreachable' | 'timeout';

export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamFailureKind,
    message: string,
    readonly details: {
      status?: number;
      attempts: number;
      retryAfterSeconds?: number;
      openaiRequestId?: string;
    },
  ) {
    super(message);
    this.name = 'UpstreamError';
  }

  /** Failures that say OpenAI is unwell (they count towards opening the circuit breaker). */
  get isTransient(): boolean {
    return this.kind === 'overloaded' || this.kind === 'unreachable' || this.kind === 'timeout';
  }
}

const DEFAULT_RETRY_AFTER_SECONDS = 2;

/** The client-facing envelope: a generic message, never OpenAI's own text. */
export function upstreamAppError(error: UpstreamError): AppError {
  const logContext = {
    upstream_kind: error.kind,
    upstream_status: error.details.status,
    upstream_attempts: error.details.attempts,
    openai_request_id: error.details.openaiRequestId,
  };
  switch (error.kind) {
    case 'refused':
    case 'unusable':
      return new AppError(502, 'OpenAI refused or garbled the request for a client secret; try again later.', {
        reason: 'upstream',
        logContext,
      });
    case 'timeout':
      return new AppError(504, 'OpenAI did not answer in time; try again shortly.', {
        reason: 'upstream',
        retryAfter: error.details.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS,
        logContext,
      });
    case 'overloaded':
    case 'unreachable':
      return new AppError(503, 'OpenAI is unavailable or overloaded; try again shortly.', {
        reason: 'upstream',
        retryAfter: error.details.retryAfterSeconds ?? DEFAULT_RETRY_AFTER_SECONDS,
        logContext,
      });
  }
}
