import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { jsonSchemaTransform } from 'fastify-type-provider-zod';
import type { OpenAPIV3 } from 'openapi-types';
import type { Config } from '../config.js';

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

/** OpenAPI generated from the routes' zod schemas, served as /openapi.json and as Swagger UI at /docs. */
export const docs = fp(
  async function docs(app: FastifyInstance, opts: DocsOptions) {
    const bearerAuth = opts.bearerAuth ?? false;
    // The Origin is checked by the guard (403 in the envelope), so it is documented here rather
    // than put in a route's `headers` schema, which would validate it (422) first.
    const originHeader = {
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
      },
      required: opts.config.allowMissingOrigin ? [] : ['Origin'],
    };

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
            'and what the client should do. To try it: open POST /v1/realtime/token, click "Try it out", ' +
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
        const output = jsonSchemaTransform(input);
        // The /v1 scope marks its routes: they all check the Origin (and the JWT when auth is on).
        if (input.route?.config?.guard === undefined) return output;
        const schema: JsonSchema = { ...(output.schema as JsonSchema), headers: originHeader };
        const response = { ...(schema.response as Record<string, JsonSchema> | undefined) };
        if (bearerAuth) schema.security = [{ bearerAuth: [] }];
        else delete response['401'];
        schema.response = response;
        return { ...output, schema };
      },
      // @fastify/swagger marks every body required; a nullable (optional) one is not.
      transformObject: (document) => {
        const openapi = 'openapiObject' in document ? document.openapiObject : document.swaggerObject;
        for (const item of Object.values((openapi as OpenAPIV3.Document).paths ?? {})) {
          for (const operation of Object.values(item ?? {})) {
            const body = (operation as OpenAPIV3.OperationObject | undefined)?.requestBody as OpenAPIV3.RequestBodyObject | undefined;
            const schema = body?.content?.['application/json']?.schema as OpenAPIV3.SchemaObject | undefined;
            if (body && schema?.nullable) body.required = false;
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
