import type { FastifyInstance } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Config } from '../../config.js';
import { MAX_LOGGED_CHARS } from '../../limits.js';
import type { ServiceMetrics } from '../../metrics.js';
import type { SecretMinter } from '../../realtime/minter.js';
import type { SpendControl } from '../../usage/spend.js';
import { resolveChoice, tokenRequestSchema, type ChoicesConfig } from '../../realtime/choices.js';
import { connectionUrls } from '../../realtime/session.js';
import { errorResponses, NO_STORE } from '../error-responses.js';

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
  .describe('A client secret for one client, and where to use it (`Cache-Control: no-store`).')
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

export async function tokenRoutes(
  app: FastifyInstance,
  opts: {
    config: ChoicesConfig & Pick<Config, 'rateLimitPerMinute' | 'openaiBaseUrl'>;
    minter: SecretMinter;
    metrics: ServiceMetrics;
    spend: Pick<SpendControl, 'countSecret'>;
  },
) {
  const { config, minter, metrics, spend } = opts;
  const urls = new Map(config.allowedModels.map((model) => [model, connectionUrls(config, model)]));

  app.withTypeProvider<ZodTypeProvider>().post(
    '/v1/realtime/token',
    {
      // Each mint already logs its audit line, each refusal its refusal line.
      config: { spends: 'secret', quietAccessLog: true },
      schema: {
        tags: ['realtime'],
        summary: 'Mint an ephemeral Realtime client secret',
        description:
          'Called by the extension with its Origin (an allowed origin, e.g. `chrome-extension://<id>`). ' +
          'Returns a secret the browser uses as bearer to open a WebRTC session at `web_rtc_url`. ' +
          `Rate limited to ${config.rateLimitPerMinute} per client per minute.`,
        body: tokenRequestSchema(config),
        responseHeaders: { 200: { 'Cache-Control': NO_STORE } },
        response: {
          200: tokenResponseSchema,
          ...errorResponses([400, 401, 403, 413, 415, 422, 429, 431, 502, 503, 504]),
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
      spend.countSecret(choice.model);
      request.log.info(
        {
          audit: 'client_secret_minted',
          origin: request.headers.origin?.slice(0, MAX_LOGGED_CHARS),
          client_ip: request.clientIp,
          user: request.userId,
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
