import { createInstance, getHttpOperationsFromSpec, type IHttpRequest, type IHttpResponse } from '@stoplight/prism-http';
import * as TE from 'fp-ts/TaskEither';
import { pino } from 'pino';
import type { Exchange, RecordedRequest, RecordedResponse } from './traffic.js';

export interface Violation {
  severity: string;
  location: string;
  message: string;
}

export interface Verdict {
  /** Prism found the operation (method and path) in the document. */
  routed: boolean;
  request: Violation[];
  response: Violation[];
}

const JSON_TYPE = /^application\/(?:[\w.+-]+\+)?json\b/i;

function isJson(contentType: string | undefined): boolean {
  return JSON_TYPE.test(contentType?.trim() ?? '');
}

/** The body as Prism's own HTTP server reads it: none, parsed JSON, or text. */
function requestBody(request: RecordedRequest): unknown {
  if (!request.body || request.body.length === 0) return null;
  const text = request.body.toString('utf8');
  if (!isJson(request.headers['content-type'])) return text;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    // Prism's server never answers a request whose JSON does not parse; as text it is judged (and flagged) like any other.
    return text;
  }
}

/** The answer as Prism's proxy reads an upstream's: JSON parsed, anything else as text, headers joined. */
function responseOf(response: RecordedResponse): IHttpResponse {
  const text = response.body.toString('utf8');
  const body = response.status !== 204 && isJson(response.headers['content-type']) ? (JSON.parse(text) as unknown) : text;
  return { statusCode: response.status, headers: response.headers, body };
}

/** @stoplight/types' DiagnosticSeverity, by number. */
const SEVERITY = ['error', 'warning', 'information', 'hint'];

function violations(list: readonly { severity: number; path?: string[]; message: string }[], side: string): Violation[] {
  return list.map((item) => ({
    severity: SEVERITY[item.severity] ?? String(item.severity),
    location: [side, ...(item.path ?? [])].join('.'),
    message: item.message,
  }));
}

/**
 * Stoplight Prism's router and its request and response validators, as its proxy runs them, fed with
 * recorded traffic: Prism's forwarder is swapped for one that hands back the response that the real
 * server gave (Prism's own HTTP front never answers a request whose JSON body does not parse, and
 * cannot hold a connection open across a server's shutdown; the recording can).
 */
export async function prismValidator(document: object): Promise<(exchange: Exchange) => Promise<Verdict>> {
  const operations = await getHttpOperationsFromSpec(structuredClone(document));
  const answers = new WeakMap<IHttpRequest, IHttpResponse>();
  const prism = createInstance(
    {
      isProxy: true,
      upstream: new URL('http://recorded.invalid'),
      upstreamProxy: undefined,
      checkSecurity: true,
      validateRequest: true,
      validateResponse: true,
      errors: false,
      mock: { dynamic: false },
    },
    {
      logger: pino({ enabled: false }),
      forward: ({ data }) => () => {
        const answer = answers.get(data);
        return answer ? TE.right(answer) : TE.left(new Error('no recorded answer for this request'));
      },
    },
  );
  return async ({ request, response }) => {
    const input: IHttpRequest = {
      method: request.method.toLowerCase() as IHttpRequest['method'],
      url: { path: request.path, query: request.query },
      headers: request.headers,
      body: requestBody(request),
    };
    answers.set(input, responseOf(response));
    const result = await prism.request(input, operations)();
    if (result._tag === 'Left') throw result.left;
    const input_ = result.right.validations.input;
    const routed = !input_.some((item) => item.message === 'Selected route not found');
    return {
      routed,
      request: violations(routed ? input_ : [], 'request'),
      response: violations(result.right.validations.output, 'response'),
    };
  };
}
