import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { hasZodFastifySchemaValidationErrors } from 'fastify-type-provider-zod';
import { z } from 'zod';
import { BODY_LIMIT_BYTES, kib, MAX_HEADER_BYTES } from './limits.js';

// Not `import { STATUS_CODES } from 'node:http'`: node:http as an ES module reads every export, and
// its lazy WebSocket getters load Node's bundled undici for nothing (measured: 0.8 MB less live heap after boot).
const { STATUS_CODES } = process.getBuiltinModule('node:http');

/** Why a request was refused: the label of the refusal log line and of the refusals metric. */
export type RefusalReason =
  | 'origin'
  | 'auth'
  | 'rate_limit'
  | 'quota'
  /** The client's daily spend cap is reached. */
  | 'spend'
  | 'budget'
  /** Too many relayed calls at once for one client. */
  | 'concurrency'
  | 'validation'
  | 'bad_request'
  | 'not_found'
  | 'upstream'
  | 'breaker'
  | 'overloaded'
  // /readyz: OpenAI refused the key, or the process is shutting down.
  | 'not_ready'
  // /admin, /admin/usage, /metrics: the operator's token is missing or wrong.
  | 'operator_auth'
  | 'internal';

export interface AppErrorOptions {
  reason: RefusalReason;
  retryAfter?: number;
  details?: Record<string, unknown>;
  headers?: Record<string, string>;
  /** Logged with the refusal, never sent to the client. */
  logContext?: Record<string, unknown>;
}

/** An error that already knows its status and the client-safe message of the envelope. */
export class AppError extends Error {
  readonly statusCode: number;
  readonly reason: RefusalReason;
  readonly retryAfter: number | undefined;
  readonly details: Record<string, unknown> | undefined;
  readonly headers: Record<string, string>;
  readonly logContext: Record<string, unknown> | undefined;

  constructor(statusCode: number, message: string, options: AppErrorOptions) {
    super(message);
    this.name = 'AppError';
    this.statusCode = statusCode;
    this.reason = options.reason;
    this.retryAfter = options.retryAfter;
    this.details = options.details;
    this.headers = options.headers ?? {};
    this.logContext = options.logContext;
  }
}

export const errorEnvelopeSchema = z
  .object({
    error: z.object({
      code: z.number().int().describe('The HTTP status, repeated.'),
      message: z.string().describe('What went wrong, safe to show a developer.'),
      request_id: z.string().describe('Also in the X-Request-ID header; quote it in bug reports.'),
      retry_after: z.number().int().optional().describe('Seconds to wait before trying again.'),
      details: z.record(z.string(), z.unknown()).optional(),
    }),
  })
  .describe('The one error envelope of every route and every layer.');

export type ErrorEnvelope = z.infer<typeof errorEnvelopeSchema>;

export function envelope(
  statusCode: number,
  message: string,
  requestId: string,
  extra: { retryAfter?: number; details?: Record<string, unknown> } = {},
): ErrorEnvelope {
  return {
    error: {
      code: statusCode,
      message,
      request_id: requestId,
      ...(extra.retryAfter !== undefined ? { retry_after: extra.retryAfter } : {}),
      ...(extra.details !== undefined ? { details: extra.details } : {}),
    },
  };
}

interface FieldProblem {
  path: string;
  message: string;
}

function fieldProblems(validation: readonly unknown[]): FieldProblem[] {
  const fields: FieldProblem[] = [];
  for (const raw of validation) {
    const item = raw as { instancePath?: string; message?: string; keyword?: string; params?: { keys?: unknown } };
    const path = (item.instancePath ?? '').replace(/^\//, '').replaceAll('/', '.');
    if (item.keyword === 'unrecognized_keys' && Array.isArray(item.params?.keys)) {
      for (const key of item.params.keys) {
        fields.push({ path: path ? `${path}.${String(key)}` : String(key), message: 'is not a known field' });
      }
      continue;
    }
    fields.push({ path: path || '(body)', message: item.message ?? 'is invalid' });
  }
  return fields;
}

/**
 * Turns anything thrown by any layer into an AppError whose message is safe to send.
 * `bodyLimit`: the route's (the calls route takes more than the JSON routes).
 */
function toAppError(error: FastifyError | AppError | Error, bodyLimit = BODY_LIMIT_BYTES): AppError {
  if (error instanceof AppError) return error;
  if (hasZodFastifySchemaValidationErrors(error)) {
    return new AppError(422, 'The request body does not match the schema.', {
      reason: 'validation',
      details: { fields: fieldProblems(error.validation) },
    });
  }
  const code = (error as FastifyError).code;
  switch (code) {
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
      return new AppError(400, 'The request body is not valid JSON.', { reason: 'bad_request' });
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new AppError(413, `The request body is larger than ${kib(bodyLimit)}.`, { reason: 'bad_request' });
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new AppError(415, 'The request body must be application/json.', { reason: 'bad_request' });
    default:
      break;
  }
  if (error instanceof SyntaxError) {
    return new AppError(400, 'The request body is not valid JSON.', { reason: 'bad_request' });
  }
  const status = (error as FastifyError).statusCode;
  if (typeof status === 'number' && status >= 400 && status < 500) {
    return new AppError(status, STATUS_CODES[status] ?? 'Bad request', { reason: 'bad_request' });
  }
  return new AppError(500, 'Internal server error.', { reason: 'internal' });
}

export interface RefusalObserver {
  (request: FastifyRequest, error: AppError): void;
}

/** Headers every error answer carries, whichever hook refused it (helmet's, from app.ts). */
export type ErrorHeaders = Record<string, string>;

function sendError(request: FastifyRequest, reply: FastifyReply, error: AppError, headers: ErrorHeaders): FastifyReply {
  reply.headers(headers);
  // Set here too: a framework error never ran the onRequest hook that sets it.
  reply.header('x-request-id', request.id);
  for (const [name, value] of Object.entries(error.headers)) reply.header(name, value);
  if (error.retryAfter !== undefined) reply.header('retry-after', String(error.retryAfter));
  return reply
    .code(error.statusCode)
    .header('cache-control', 'no-store')
    .type('application/json; charset=utf-8')
    .send(
      envelope(error.statusCode, error.message, request.id, {
        retryAfter: error.retryAfter,
        details: error.details,
      }),
    );
}

export interface ErrorHandlingOptions {
  onRefusal: RefusalObserver;
  headers: ErrorHeaders;
}

/** The one error handler and the not-found handler: every failure leaves in the same envelope. */
export const errorHandling = fp(
  async function errorHandling(app: FastifyInstance, opts: ErrorHandlingOptions) {
    // url -> methods, to tell a missing route (404) from a wrong method (405).
    const methodsByUrl = new Map<string, Set<string>>();
    app.addHook('onRoute', (route) => {
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      const known = methodsByUrl.get(route.url) ?? new Set<string>();
      for (const method of methods) known.add(method);
      methodsByUrl.set(route.url, known);
    });

    app.setErrorHandler((rawError: FastifyError | AppError, request, reply) => {
      const error = toAppError(rawError, request.routeOptions.bodyLimit);
      if (error.statusCode >= 500 && error.reason === 'internal') {
        request.log.error({ err: rawError }, 'unhandled error');
      }
      opts.onRefusal(request, error);
      return sendError(request, reply, error, opts.headers);
    });

    app.setNotFoundHandler((request, reply) => {
      const path = (request.url.split('?', 1)[0] ?? '/').slice(0, 200);
      const allowed = methodsByUrl.get(path);
      const error = allowed
        ? new AppError(405, `Method ${request.method} is not allowed on ${path}.`, {
            reason: 'not_found',
            headers: { allow: [...allowed].join(', ') },
          })
        : new AppError(404, `No route ${request.method} ${path}.`, { reason: 'not_found' });
      opts.onRefusal(request, error);
      return sendError(request, reply, error, opts.headers);
    });
  },
  { name: 'error-handling' },
);

/**
 * Fastify's `frameworkErrors`: what its router refuses before any hook or route runs (a malformed
 * %-escape in the path, a path parameter past the router's length limit) leaves in the envelope
 * too, with the request id and the security headers, and without echoing the path.
 */
export function frameworkErrors(opts: ErrorHandlingOptions) {
  return function handleFrameworkError(rawError: FastifyError, request: FastifyRequest, reply: FastifyReply): void {
    let error: AppError;
    if (rawError.code === 'FST_ERR_BAD_URL') {
      error = new AppError(400, 'The request path is not valid (a malformed %-escape).', { reason: 'bad_request' });
    } else if (rawError.code === 'FST_ERR_MAX_PARAM_LENGTH') {
      error = new AppError(414, 'A path segment of the request is too long.', { reason: 'bad_request' });
    } else {
      error = toAppError(rawError);
    }
    opts.onRefusal(request, error);
    void sendError(request, reply, error, opts.headers);
  };
}

// What Node's HTTP parser refuses before Fastify sees a request, and what the client should hear.
const CLIENT_ERRORS: Record<string, [number, string]> = {
  HPE_HEADER_OVERFLOW: [431, `The request headers are larger than ${kib(MAX_HEADER_BYTES)}.`],
  ERR_HTTP_REQUEST_TIMEOUT: [408, 'The request did not arrive in time.'],
  ERR_HTTP_HEADERS_TIMEOUT: [408, 'The request headers did not arrive in time.'],
};

function rawEnvelope(status: number, message: string): string {
  const requestId = randomUUID();
  const body = JSON.stringify(envelope(status, message, requestId));
  return (
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n` +
    'Content-Type: application/json; charset=utf-8\r\n' +
    `Content-Length: ${Buffer.byteLength(body)}\r\n` +
    `X-Request-ID: ${requestId}\r\n` +
    'Cache-Control: no-store\r\nConnection: close\r\n\r\n' +
    body
  );
}

/**
 * Fastify's clientErrorHandler: requests Node's parser refuses (headers over the cap, a malformed
 * request line, a client too slow) leave in the one envelope with a request id, where a response
 * can still be written. `onClientError` counts them (never the raw bytes: they are the attacker's).
 */
export function clientErrorHandler(onClientError: (status: number, code: string) => void) {
  return function handleClientError(error: Error & { code?: string }, socket: Socket): void {
    if (error.code === 'ECONNRESET' || socket.destroyed) return;
    const [status, message] = CLIENT_ERRORS[error.code ?? ''] ?? [400, 'The request is not valid HTTP.'];
    onClientError(status, error.code ?? 'unknown');
    if (socket.writable) socket.end(rawEnvelope(status, message), () => socket.destroy());
    else socket.destroy();
  };
}

/**
 * Node answers an Expect header other than 100-continue with a bare 417 unless someone listens for
 * it: answer in the envelope instead.
 */
export function expectationFailed(_request: IncomingMessage, response: ServerResponse): void {
  const requestId = randomUUID();
  const body = JSON.stringify(envelope(417, 'Only "Expect: 100-continue" is supported.', requestId));
  response.writeHead(417, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
    'x-request-id': requestId,
    'cache-control': 'no-store',
    connection: 'close',
  });
  response.end(body);
}
