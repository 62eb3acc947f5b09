import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance, FastifySchema } from 'fastify';
import fp from 'fastify-plugin';
import { jsonSchemaTransform } from 'fastify-type-provider-zod';
import type { OpenAPIV3 } from 'openapi-types';
import { z } from 'zod';
import type { Config } from '../config.js';
import { errorHeaders, errorResponses } from '../routes/error-responses.js';
import { RATE_LIMIT_HEADERS } from './rate-limit.js';

declare module 'fastify' {
  interface FastifySchema {
    /** Response headers by status, as OpenAPI Header Objects: documented as given, on top of the ones every answer has. */
    responseHeaders?: Record<number, Record<string, OpenAPIV3.HeaderObject>>;
    /**
     * The body by media type, when one schema cannot say it (an `application/sdp` string, or a
     * multipart form with its parts' types). Documentation only: `body` still validates what the
     * route's content-type parsers made of it.
     */
    requestBodyDocs?: {
      description: string;
      content: Record<string, { schema: z.ZodType; encoding?: Record<string, OpenAPIV3.EncodingObject> }>;
    };
  }
}

export interface DocsOptions {
  version: string;
  config: Pick<Config, 'allowedOrigins' | 'allowMissingOrigin'>;
  /**
   * Caller authentication is on (AUTH_JWKS_URL or AUTH_JWT_SECRET): the guarded routes document
   * `Authorization: Bearer <JWT>` (an OpenAPI bearer scheme, so /docs gets an Authorize button)
   * and their 401. Off: neither appears.
   */
  bearerAuth?: boolean;
}

type JsonSchema = Record<string, unknown>;

/** Every answer, from every layer, carries it (the request-context plugin sets it first thing). */
const REQUEST_ID_HEADER: OpenAPIV3.HeaderObject = {
  description: 'The request id: the caller\'s own `X-Request-ID` when well formed (1 to 128 of `A-Za-z0-9._-`), else a new UUID. Also `request_id` in an error envelope; quote it in bug reports.',
  required: true,
  schema: { type: 'string', minLength: 1, maxLength: 128 },
};

/**
 * What any route can answer before it runs: headers over the cap (Node's parser refuses them) and
 * a replica that is shutting down or stalled. A route that documents its own 503 keeps it.
 */
const EVERY_ROUTE = errorResponses([431, 503], {
  503: {
    when: 'this replica is shutting down, or its event loop is stalled (overloaded)',
    todo: 'retry after `retry_after` seconds; another replica answers',
    example: { message: 'The service is shutting down; retry shortly (another replica will answer).', extra: { retry_after: 1 } },
  },
});

/** `/v1/realtime/calls/:call_id` as OpenAPI writes it. */
function openapiPath(url: string): string {
  return url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
}

/** What @fastify/swagger cannot express from a route schema, kept per operation and written into the document at the end. */
interface OperationExtras {
  headers: Record<string, Record<string, OpenAPIV3.HeaderObject>>;
  requestBody?: OpenAPIV3.RequestBodyObject;
}

function requestBodyOf({ description, content }: NonNullable<FastifySchema['requestBodyDocs']>): OpenAPIV3.RequestBodyObject {
  const media: Record<string, OpenAPIV3.MediaTypeObject> = {};
  for (const [type, { schema, encoding }] of Object.entries(content)) {
    const json = z.toJSONSchema(schema, { target: 'openapi-3.0', io: 'input' }) as JsonSchema;
    delete json.$schema;
    media[type] = { schema: json, ...(encoding ? { encoding } : {}) };
  }
  return { description, required: true, content: media };
}

/** OpenAPI generated from the routes' zod schemas, served as /openapi.json and as Swagger UI at /docs. */
export const docs = fp(
  async function docs(app: FastifyInstance, opts: DocsOptions) {
    const bearerAuth = opts.bearerAuth ?? false;
    const extras = new Map<string, OperationExtras>();
    const requestIdParameter = {
      type: 'string',
      pattern: '^[A-Za-z0-9._-]{1,128}$',
      description: 'Optional: your own id for this request, echoed in the `X-Request-ID` answer and the logs.',
    };
    // The Origin is checked by the guard (403 in the envelope), so it is documented here rather
    // than put in a route's `headers` schema, which would validate it (422) first.
    const guardedHeaders = {
      type: 'object',
      properties: {
        Origin: {
          type: 'string',
          example: opts.config.allowedOrigins[0],
          description:
            'The caller\'s origin, compared exactly with `ALLOWED_ORIGINS` (e.g. `chrome-extension://<id>`). ' +
            'Browsers set it themselves and ignore a value typed here: "Try it out" sends this page\'s own origin. ' +
            'curl and servers must send it.',
        },
        'X-Request-ID': requestIdParameter,
      },
      required: opts.config.allowMissingOrigin ? [] : ['Origin'],
    };
    const openHeaders = { type: 'object', properties: { 'X-Request-ID': requestIdParameter } };

    await app.register(swagger, {
      openapi: {
        openapi: '3.0.3',
        info: {
          title: 'Realtime token service',
          version: opts.version,
          description:
            'Mints short-lived OpenAI Realtime client secrets for the Parker browser extension, ' +
            'so the browser never holds the OpenAI key. Every error is one envelope: ' +
            '`{"error": {"code", "message", "request_id", "retry_after"?, "details"?}}`, ' +
            'and every response carries `X-Request-ID`. Each response below says when it happens ' +
            'and what the client should do. Outside the routes below: an unknown path answers 404, a known ' +
            'path with another method 405 (with `Allow`), and a request that is not valid HTTP 400, 408 or 417, ' +
            'all in the same envelope. To try it: open POST /v1/realtime/token, click "Try it out", ' +
            'then "Execute" (this works in `npm run demo`, which allows this page\'s origin).',
        },
        tags: [
          { name: 'realtime', description: 'Client secrets and relayed calls for the Realtime API' },
          { name: 'operations', description: 'Health, readiness and service information' },
        ],
        ...(bearerAuth
          ? {
              components: {
                securitySchemes: {
                  bearerAuth: {
                    type: 'http',
                    scheme: 'bearer',
                    bearerFormat: 'JWT',
                    description: 'A JWT from the sign-in provider the service trusts (AUTH_JWKS_URL or AUTH_JWT_SECRET).',
                  },
                },
              },
            }
          : {}),
      },
      transform: (input) => {
        const { responseHeaders, requestBodyDocs, ...schema } = input.schema ?? {};
        if (schema.hide) return jsonSchemaTransform(input);
        // The /v1 scope marks its routes: they all check the Origin (and the JWT when auth is on).
        const guard = input.route?.config?.guard;
        const response: Record<string, unknown> = { ...EVERY_ROUTE, ...(schema.response as Record<string, unknown> | undefined) };
        // A /v1 route answers 401 only with caller authentication on; a route with its own token (/admin/usage) always may.
        if (guard && !bearerAuth) delete response['401'];
        const output = jsonSchemaTransform({ ...input, schema: { ...schema, response } });
        const transformed: JsonSchema = { ...(output.schema as JsonSchema), headers: guard ? guardedHeaders : openHeaders };
        if (guard && bearerAuth) transformed.security = [{ bearerAuth: [] }];
        if (requestBodyDocs) {
          delete transformed.body;
          delete transformed.consumes;
        }

        const headers: OperationExtras['headers'] = {};
        for (const status of Object.keys(response)) {
          headers[status] = {
            'X-Request-ID': REQUEST_ID_HEADER,
            ...(Number(status) >= 400 ? errorHeaders(Number(status)) : {}),
            // The limits run on the routes that spend: their answers say how much is left.
            ...(guard === 'spends' ? RATE_LIMIT_HEADERS : {}),
            ...responseHeaders?.[Number(status)],
          };
        }
        const methods = input.route?.method ?? [];
        for (const method of Array.isArray(methods) ? methods : [methods]) {
          extras.set(`${method.toLowerCase()} ${openapiPath(input.url)}`, {
            headers,
            requestBody: requestBodyDocs ? requestBodyOf(requestBodyDocs) : undefined,
          });
        }
        return { ...output, schema: transformed };
      },
      transformObject: (document) => {
        const openapi = ('openapiObject' in document ? document.openapiObject : document.swaggerObject) as OpenAPIV3.Document;
        for (const [path, item] of Object.entries(openapi.paths ?? {})) {
          for (const [method, value] of Object.entries(item ?? {})) {
            const operation = value as OpenAPIV3.OperationObject;
            const extra = extras.get(`${method} ${path}`);
            if (extra?.requestBody) operation.requestBody = extra.requestBody;
            // @fastify/swagger marks every body required; a nullable (optional) one is not.
            const body = operation.requestBody as OpenAPIV3.RequestBodyObject | undefined;
            if ((body?.content?.['application/json']?.schema as OpenAPIV3.SchemaObject | undefined)?.nullable) body!.required = false;
            for (const [status, response] of Object.entries(operation.responses ?? {})) {
              const answer = response as OpenAPIV3.ResponseObject;
              // A 204 has no body, by definition: nothing to describe but its headers.
              if (status === '204') delete answer.content;
              const headers = extra?.headers[status];
              if (headers) answer.headers = headers;
            }
          }
        }
        return openapi;
      },
    });
    await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: true } });
    app.get('/openapi.json', { schema: { hide: true }, config: { quietAccessLog: true } }, async () => app.swagger());
  },
  { name: 'docs' },
);
