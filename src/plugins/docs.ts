import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { jsonSchemaTransform } from 'fastify-type-provider-zod';
import type { OpenAPIV3 } from 'openapi-types';

/** OpenAPI generated from the routes' zod schemas, served as /openapi.json and as Swagger UI at /docs. */
export const docs = fp(
  async function docs(app: FastifyInstance, opts: { version: string }) {
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
            'and every response carries `X-Request-ID`.',
        },
        tags: [
          { name: 'realtime', description: 'Client secrets for the Realtime API' },
          { name: 'operations', description: 'Health and service information' },
        ],
      },
      transform: jsonSchemaTransform,
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
