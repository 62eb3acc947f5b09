import type { OpenAPIV3 } from 'openapi-types';
import { errorEnvelopeSchema } from '../errors.js';
import { BODY_LIMIT_BYTES, kib, MAX_HEADER_BYTES } from '../limits.js';
import { UPSTREAM_REFUSED_MESSAGE } from '../openai/upstream-error.js';

export interface ErrorStatusDoc {
  /** When the service answers this status. */
  when: string;
  /** What the client should do about it. */
  todo: string;
  /** The example envelope's message and extra fields. */
  example: { message: string; extra?: Record<string, unknown> };
}

/**
 * What each error status means to a client: the one table behind every route's documented
 * responses and the README's Errors table (a test keeps the two in step).
 */
export const ERROR_STATUSES = {
  400: {
    when: 'the body is not valid JSON',
    todo: 'fix the request; retrying it unchanged fails again',
    example: { message: 'The request body is not valid JSON.' },
  },
  401: {
    when: 'caller authentication is on and the bearer JWT is missing, expired or invalid (`WWW-Authenticate` says which)',
    todo: 'sign the user in again (a fresh JWT), then retry once',
    example: { message: 'The bearer token is invalid or expired.' },
  },
  403: {
    when: 'the Origin is missing (unless `ALLOW_MISSING_ORIGIN=true`) or not allowed, or the Referer is from a foreign origin',
    todo: 'do not retry: this origin is not allowed (the operator adds it to `ALLOWED_ORIGINS`)',
    example: { message: 'This Origin is not allowed to request client secrets.' },
  },
  404: {
    when: 'no such route',
    todo: 'fix the URL',
    example: { message: 'No route GET /v1/realtime/tokens.' },
  },
  405: {
    when: 'the route exists but not with this method (the `Allow` header lists the methods)',
    todo: 'use a method from `Allow`',
    example: { message: 'Method GET is not allowed on /v1/realtime/token.' },
  },
  413: {
    when: `the body is over ${kib(BODY_LIMIT_BYTES)}`,
    todo: 'shorten `instructions`',
    example: { message: `The request body is larger than ${kib(BODY_LIMIT_BYTES)}.` },
  },
  415: {
    when: 'the body is not `application/json`',
    todo: 'send JSON with `Content-Type: application/json` (or no body at all)',
    example: { message: 'The request body must be application/json.' },
  },
  422: {
    when: 'a field breaks the schema; `details.fields: [{path, message}]` names each one',
    todo: 'fix the named fields',
    example: {
      message: 'The request body does not match the schema.',
      extra: { details: { fields: [{ path: 'voice', message: 'Invalid option: expected one of "verse"|"cedar"' }] } },
    },
  },
  429: {
    when: 'this client is over its rate limit, its daily quota, its daily spend cap (`details: {limit_usd, spent_usd}`), or its calls at once',
    todo: 'wait `retry_after` seconds (also `Retry-After`; `details.reset_time` for a limit), then retry',
    example: {
      message: 'Too many token requests (10 per minute); retry in 42 s.',
      extra: { retry_after: 42, details: { limit: 10, remaining: 0, reset_time: '2026-11-23T12:00:42.000Z' } },
    },
  },
  431: {
    when: `the request headers are over ${kib(MAX_HEADER_BYTES)}`,
    todo: 'send fewer or shorter headers (cookies are the usual culprit)',
    example: { message: `The request headers are larger than ${kib(MAX_HEADER_BYTES)}.` },
  },
  502: {
    when: 'OpenAI refused the request (400/401/403/404) or answered something unusable',
    todo: 'do not retry: it is a configuration problem (bad key, retired model); the operator sees OpenAI\'s message in the logs',
    example: { message: UPSTREAM_REFUSED_MESSAGE },
  },
  503: {
    when: 'OpenAI is overloaded or unreachable (429/5xx/resets after retries), the circuit breaker is open, the global budget or the global daily spend cap is spent (`details: {limit_usd, spent_usd}`), callers cannot be authenticated right now (the JWKS did not answer), or this replica is overloaded or shutting down',
    todo: 'retry after `retry_after` seconds, with backoff',
    example: { message: 'OpenAI is unavailable or overloaded; try again shortly.', extra: { retry_after: 2 } },
  },
  504: {
    when: 'OpenAI did not answer within the timeout, after retries',
    todo: 'retry after `retry_after` seconds, with backoff',
    example: { message: 'OpenAI did not answer in time; try again shortly.', extra: { retry_after: 2 } },
  },
} as const satisfies Record<number, ErrorStatusDoc>;

export type ErrorStatus = keyof typeof ERROR_STATUSES;

/** `Cache-Control: no-store`: on every error, and on every answer that holds a secret or a call. */
export const NO_STORE: OpenAPIV3.HeaderObject = {
  description: 'Always `no-store`: the answer is for this caller, now.',
  required: true,
  schema: { type: 'string', enum: ['no-store'] },
};

const RETRY_AFTER: OpenAPIV3.HeaderObject = {
  description: 'Seconds to wait before trying again; the same number as `retry_after` in the envelope, present whenever it is.',
  schema: { type: 'integer', minimum: 1 },
};

const WWW_AUTHENTICATE: OpenAPIV3.HeaderObject = {
  description: 'Says why the bearer JWT was refused: `Bearer error="invalid_token"`.',
  required: true,
  schema: { type: 'string' },
};

/** The headers of the envelope's answers with this status, besides the `X-Request-ID` of every answer. */
export function errorHeaders(status: number): Record<string, OpenAPIV3.HeaderObject> {
  return {
    'Cache-Control': NO_STORE,
    ...(status === 401 ? { 'WWW-Authenticate': WWW_AUTHENTICATE } : {}),
    ...(status === 429 || status === 503 || status === 504 ? { 'Retry-After': RETRY_AFTER } : {}),
  };
}

/** The text of a documented error response: when it happens and what the client should do. */
export function errorDescription(doc: Pick<ErrorStatusDoc, 'when' | 'todo'>): string {
  return `**When:** ${doc.when}. **What to do:** ${doc.todo}.`;
}

/**
 * The `response` entries of a route's schema for the given error statuses, each the one envelope
 * with its description and example. `overrides` changes a row for one route (e.g. a calls route's
 * own size limit or example message).
 */
export function errorResponses<S extends ErrorStatus>(
  statuses: readonly S[],
  overrides: Partial<Record<S, Partial<ErrorStatusDoc>>> = {},
) {
  const responses = {} as Record<S, ReturnType<typeof errorEnvelopeSchema.describe>>;
  for (const status of statuses) {
    const doc: ErrorStatusDoc = { ...ERROR_STATUSES[status], ...overrides[status] };
    responses[status] = errorEnvelopeSchema.describe(errorDescription(doc)).meta({
      examples: [
        {
          error: { code: status, message: doc.example.message, request_id: '5b0c8a2e-5d3c-4a8e-9a51-2f9f3d0c9e11', ...doc.example.extra },
        },
      ],
    });
  }
  return responses;
}
