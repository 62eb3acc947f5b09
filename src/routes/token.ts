import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Config } from '../config.js';
import { errorEnvelopeSchema } from '../errors.js';
import type { ServiceMetrics } from '../metrics.js';
import type { SecretMinter } from '../realtime/minter.js';
import { connectionUrls, resolveChoice, tokenRequestSchema } from '../realtime/session.js';

const tokenResponseSchema = z
  .object({
    client_secret: z.string().describe('The ephemeral secret (ek_...). Use it as the bearer for OpenAI; hand it to one client only.'),
    expires_at: z.number().int().describe('When the secret stops opening sessions, in Unix seconds.'),
    session_id: z.string().describe('OpenAI session id (sess_...).'),
    model: z.string(),
    voice: z.string(),
    instructions: z.string().describe('The effective instructions sent to OpenAI: persona, tone, sport, additions.'),
    web_rtc_url: z.string().describe('POST the SDP offer here with the secret as bearer.'),
    websocket_url: z.string().describe('Or open a WebSocket here with the secret.'),
  })
  .meta({
    examples: [
      {
        client_secret: 'ek_68af296e8e408191a1120ab6383263c2',
        expires_at: 1756310470,
        session_id: 'sess_C9CiUVUzUzYIssh3ELY1d',
        model: 'gpt-realtime',
        voice: 'verse',
        instructions: 'You are Parker, an enthusiastic sports commentator...',
        web_rtc_url: 'https://api.openai.com/v1/realtime/calls',
        websocket_url: 'wss://api.openai.com/v1/realtime?model=gpt-realtime',
      },
    ],
  });

function errorExample(code: number, message: string, extra: Record<string, unknown> = {}) {
  return errorEnvelopeSchema.meta({
    examples: [{ error: { code, message, request_id: '5b0c8a2e-5d3c-4a8e-9a51-2f9f3d0c9e11', ...extra } }],
  });
}

export async function tokenRoutes(
  app: FastifyInstance,
  opts: { config: Config; minter: SecretMinter; metrics: ServiceMetrics },
) {
  const { config, minter, metrics } = opts;
  const urls = new Map(config.allowedModels.map((model) => [model, connectionUrls(config, model)]));

  app.withTypeProvider<ZodTypeProvider>().post(
    '/v1/realtime/token',
    {
      onRequest: app.mintGuards,
      // Each mint already logs its audit line, each refusal its refusal line.
      config: { quietAccessLog: true },
      schema: {
        tags: ['realtime'],
        summary: 'Mint an ephemeral Realtime client secret',
        description:
          'Called by the extension with its Origin (an allowed origin, e.g. chrome-extension://<id>). ' +
          'Returns a secret the browser uses as bearer to open a WebRTC session at `web_rtc_url`. ' +
          `Rate limited to ${config.rateLimitPerMinute} per client per minute.`,
        body: tokenRequestSchema(config),
        response: {
          200: tokenResponseSchema,
          400: errorExample(400, 'The request body is not valid JSON.'),
          403: errorExample(403, 'This Origin is not allowed to request client secrets.'),
          413: errorExample(413, 'The request body is larger than 16 KiB.'),
          415: errorExample(415, 'The request body must be application/json.'),
          422: errorExample(422, 'The request body does not match the schema.', {
            details: { fields: [{ path: 'voice', message: 'Invalid option: expected one of "verse"|"cedar"' }] },
          }),
          429: errorExample(429, 'Too many token requests (10 per minute); retry in 42 s.', {
            retry_after: 42,
            details: { limit: 10, remaining: 0, reset_time: '2026-11-23T12:00:42.000Z' },
          }),
          502: errorExample(502, 'OpenAI refused or garbled the request for a client secret; try again later.'),
          503: errorExample(503, 'OpenAI is unavailable or overloaded; try again shortly.', { retry_after: 2 }),
          504: errorExample(504, 'OpenAI did not answer in time; try again shortly.', { retry_after: 2 }),
        },
      },
    },
    async (request, reply) => {
      const choice = resolveChoice(config, request.body);
      let outcome;
      try {
        outcome = await minter.mint(choice, request.log);
      } catch (error) {
        metrics.countMint(choice.model, 'failed');
        throw error;
      }
      const { secret, source, upstreamMs } = outcome;
      metrics.countMint(choice.model, source === 'pool' ? 'pooled' : 'minted');
      request.log.info(
        {
          audit: 'client_secret_minted',
          origin: request.headers.origin,
          client_ip: request.clientIp,
          model: choice.model,
          voice: choice.voice,
          difficulty: choice.difficulty,
          session_id: secret.sessionId,
          expires_at: secret.expiresAt,
          source,
          upstream_ms: Math.round(upstreamMs),
        },
        'client secret minted',
      );
      const { webRtcUrl, websocketUrl } = urls.get(choice.model) ?? connectionUrls(config, choice.model);
      reply.header('cache-control', 'no-store');
      return {
        client_secret: secret.value,
        expires_at: secret.expiresAt,
        session_id: secret.sessionId,
        model: choice.model,
        voice: choice.voice,
        instructions: outcome.instructions,
        web_rtc_url: webRtcUrl,
        websocket_url: websocketUrl,
      };
    },
  );
}
