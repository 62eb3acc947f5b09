import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ZodTypeProvider } from 'fastify-type-provider-zod';
import { z } from 'zod';
import type { Config } from '../../config.js';
import { AppError } from '../../errors.js';
import { CALL_BODY_LIMIT_BYTES, kib, MAX_LOGGED_CHARS, MULTIPART_LIMIT_BYTES, SDP_LIMIT_BYTES } from '../../limits.js';
import type { ServiceMetrics } from '../../metrics.js';
import type { CallManager } from '../../realtime/calls.js';
import { resolveChoice, sessionChoiceFields, tokenRequestSchema, type ChoicesConfig } from '../../realtime/choices.js';
import { errorResponses, NO_STORE } from '../error-responses.js';

const CALL_ID = /^[A-Za-z0-9_-]{1,128}$/;

/** What both body kinds are parsed into. */
interface CallBody {
  sdp: string;
  options?: string;
}

/** What both body kinds are parsed into (validated); the docs describe each kind as it is sent. */
const callBodySchema = z.object({ sdp: z.string(), options: z.string().optional() });

const sdpOfferSchema = z
  .string()
  .max(SDP_LIMIT_BYTES)
  .regex(/^v=/)
  .describe('The browser\'s SDP offer (`RTCPeerConnection.createOffer()`), unchanged: it starts with `v=`.')
  .meta({ example: 'v=0\r\no=- 4227147428 1719357865 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n...' });

const callBodyDocs = {
  description:
    'The SDP offer, as `application/sdp` (the whole body; choices in the query) or as `multipart/form-data` ' +
    'with the part `sdp` (the offer, `application/sdp`) and the optional part `options` (JSON: the body of ' +
    'POST /v1/realtime/token; it wins over the query).',
  content: {
    'application/sdp': { schema: sdpOfferSchema },
    'multipart/form-data': {
      schema: z.object({
        sdp: sdpOfferSchema,
        options: z
          .string()
          .optional()
          .describe('JSON, the body of POST /v1/realtime/token: `{model, voice, instructions, difficulty, sport}`, every field optional.'),
      }),
      encoding: { sdp: { contentType: 'application/sdp' }, options: { contentType: 'application/json' } },
    },
  },
};

function sdpProblem(sdp: string): AppError | undefined {
  if (Buffer.byteLength(sdp) > SDP_LIMIT_BYTES) {
    return new AppError(413, `The SDP offer is larger than ${kib(SDP_LIMIT_BYTES)}.`, { reason: 'bad_request' });
  }
  if (!sdp.startsWith('v=')) {
    return new AppError(400, 'The body must be an SDP offer (it starts with "v=").', { reason: 'bad_request' });
  }
  return undefined;
}

async function partText(form: FormData, name: string): Promise<string | undefined> {
  const part = form.get(name);
  if (part === null) return undefined;
  return typeof part === 'string' ? part : part.text();
}

/** multipart/form-data through undici's parser (Node's own fetch implementation), not a hand-written one. */
async function parseMultipart(request: FastifyRequest, payload: Buffer): Promise<CallBody> {
  if (payload.length > MULTIPART_LIMIT_BYTES) {
    throw new AppError(413, `The multipart body is larger than ${kib(MULTIPART_LIMIT_BYTES)}.`, { reason: 'bad_request' });
  }
  let form: FormData;
  try {
    form = await new Response(Uint8Array.from(payload), { headers: { 'content-type': String(request.headers['content-type']) } }).formData();
  } catch {
    throw new AppError(400, 'The multipart/form-data body could not be parsed.', { reason: 'bad_request' });
  }
  const sdp = await partText(form, 'sdp');
  if (sdp === undefined) throw new AppError(400, 'The multipart body has no part "sdp".', { reason: 'bad_request' });
  const problem = sdpProblem(sdp);
  if (problem) throw problem;
  const options = await partText(form, 'options');
  return options === undefined ? { sdp } : { sdp, options };
}

function invalidChoices(where: string, issues: z.core.$ZodIssue[]): AppError {
  return new AppError(422, `The ${where} does not match the schema.`, {
    reason: 'validation',
    details: { fields: issues.map((issue) => ({ path: issue.path.join('.') || '(options)', message: issue.message })) },
  });
}

/** POST /v1/realtime/calls (relay the offer, own the deadline) and DELETE /v1/realtime/calls/{id}. */
export async function callsRoutes(app: FastifyInstance, opts: { config: ChoicesConfig & Pick<Config, 'maxConcurrentCallsPerClient'>; calls: CallManager; metrics: ServiceMetrics }) {
  const { config, calls, metrics } = opts;
  const optionsSchema = tokenRequestSchema(config);

  // Parsers of this plugin only: the rest of the service stays JSON-only.
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('application/sdp', { parseAs: 'string', bodyLimit: CALL_BODY_LIMIT_BYTES }, (_request, body, done) => {
    const sdp = body as string;
    done(sdpProblem(sdp) ?? null, { sdp });
  });
  app.addContentTypeParser('multipart/form-data', { parseAs: 'buffer', bodyLimit: CALL_BODY_LIMIT_BYTES }, (request: FastifyRequest, body: string | Buffer) =>
    parseMultipart(request, body as Buffer),
  );
  app.addContentTypeParser('*', (_request, _payload, done) => {
    done(new AppError(415, 'The request body must be application/sdp or multipart/form-data.', { reason: 'bad_request' }));
  });

  app.withTypeProvider<ZodTypeProvider>().post(
    '/v1/realtime/calls',
    {
      // The route's own limit, so a body past it is refused quoting this figure, not the JSON routes'.
      bodyLimit: CALL_BODY_LIMIT_BYTES,
      config: { spends: 'call', quietAccessLog: true },
      schema: {
        tags: ['realtime'],
        summary: 'Start a voice call: the service relays the SDP offer, the browser holds no credential',
        description:
          'Instead of POSTing its SDP offer to OpenAI with a client secret, the browser POSTs it here. The service ' +
          'asks OpenAI for the call with its own key and returns OpenAI’s SDP answer; media then flows between ' +
          'the browser and OpenAI directly. `Location` names the call (`/v1/realtime/calls/{call_id}`), ' +
          '`X-Call-Ends-At` (Unix seconds) is when the service hangs it up (MAX_CALL_SECONDS). Same guards ' +
          'and quotas as the token route (one call counts as one mint), and at most ' +
          `${config.maxConcurrentCallsPerClient} calls at once per client. Any Authorization header is ignored ` +
          'unless caller authentication is on. The official @openai/agents-realtime WebRTC transport works ' +
          'unchanged with `baseUrl` set to this URL.',
        consumes: ['application/sdp', 'multipart/form-data'],
        querystring: sessionChoiceFields(config)
          .omit({ instructions: true })
          .describe('Choices for an application/sdp body (multipart: the `options` part wins over these).'),
        body: callBodySchema,
        requestBodyDocs: callBodyDocs,
        responseHeaders: {
          201: {
            Location: {
              description: 'The call: `/v1/realtime/calls/{call_id}` (DELETE it to hang up).',
              required: true,
              schema: { type: 'string', pattern: '^/v1/realtime/calls/[A-Za-z0-9_-]+$' },
            },
            'X-Call-Ends-At': {
              description: 'When the service hangs the call up (MAX_CALL_SECONDS after it started), in Unix seconds.',
              required: true,
              schema: { type: 'integer' },
            },
            'Cache-Control': NO_STORE,
          },
        },
        response: {
          201: {
            description: 'The call is on: OpenAI\'s SDP answer, for `RTCPeerConnection.setRemoteDescription()`.',
            content: {
              'application/sdp': {
                schema: z.string().meta({ example: 'v=0\r\no=- 4227147428 1719357865 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\n...' }),
              },
            },
          },
          ...errorResponses([400, 401, 403, 413, 415, 422, 429, 431, 502, 503, 504], {
            400: { when: 'the body is not an SDP offer (it must start with `v=`)', example: { message: 'The body must be an SDP offer (it starts with "v=").' } },
            413: { when: `the SDP offer is over ${kib(SDP_LIMIT_BYTES)}`, todo: 'send the browser\'s own offer, unchanged', example: { message: `The SDP offer is larger than ${kib(SDP_LIMIT_BYTES)}.` } },
            415: { when: 'the body is neither `application/sdp` nor `multipart/form-data`', todo: 'send the SDP offer as `application/sdp`', example: { message: 'The request body must be application/sdp or multipart/form-data.' } },
            422: { when: 'a choice (query parameter or `options` part) breaks the schema; `details.fields` names each one' },
            429: {
              when: `this client is over its rate limit or daily quota, or holds ${config.maxConcurrentCallsPerClient} calls already (reason concurrency)`,
              example: { message: `Too many calls at once (${config.maxConcurrentCallsPerClient} per client); end one first.`, extra: { details: { limit: config.maxConcurrentCallsPerClient } } },
            },
          }),
        },
      },
    },
    async (request, reply) => {
      let choices: z.infer<typeof optionsSchema> = request.query;
      if (request.body.options !== undefined) {
        let parsed: unknown;
        try {
          parsed = JSON.parse(request.body.options);
        } catch {
          throw new AppError(400, 'The options part is not valid JSON.', { reason: 'bad_request' });
        }
        const result = optionsSchema.safeParse(parsed);
        if (!result.success) throw invalidChoices('options part', result.error.issues);
        choices = { ...request.query, ...result.data };
      }
      const choice = resolveChoice(config, choices);
      let started;
      try {
        started = await calls.start(choice, request.body.sdp, request.clientKey, request.log);
      } catch (error) {
        metrics.countCallStart(choice.model, 'failed');
        throw error;
      }
      metrics.countCallStart(choice.model, 'started');
      const endsAt = Math.floor(started.endsAt / 1000);
      request.log.info(
        {
          audit: 'call_started',
          call_id: started.callId,
          client: request.clientKey,
          user: request.userId,
          origin: request.headers.origin?.slice(0, MAX_LOGGED_CHARS),
          model: choice.model,
          voice: choice.voice,
          difficulty: choice.difficulty,
          ends_at: endsAt,
          upstream_ms: Math.round(started.upstreamMs),
        },
        'call started',
      );
      return reply
        .code(201)
        .header('location', `/v1/realtime/calls/${started.callId}`)
        .header('x-call-ends-at', String(endsAt))
        .header('cache-control', 'no-store')
        .type('application/sdp')
        .send(started.answerSdp);
    },
  );

  app.withTypeProvider<ZodTypeProvider>().delete(
    '/v1/realtime/calls/:call_id',
    {
      schema: {
        tags: ['realtime'],
        summary: 'End a call this client started',
        description: 'Hangs the call up now and frees its slot. 404 for an unknown call or another client’s.',
        params: z.object({ call_id: z.string().describe('From the Location of POST /v1/realtime/calls.') }),
        responseHeaders: { 204: { 'Cache-Control': NO_STORE } },
        response: {
          204: z.null().describe('The call is over (or being hung up): no content.'),
          ...errorResponses([401, 403, 404, 502, 503, 504], {
            404: { when: 'no call of this client has that id (unknown, already over, or another client\'s)', todo: 'nothing: the call is not yours or is over', example: { message: 'No such call of this client.' } },
          }),
        },
      },
    },
    async (request, reply) => {
      const callId = request.params.call_id;
      const ended = CALL_ID.test(callId) && (await calls.end(callId, request.clientKey, request.log));
      if (!ended) throw new AppError(404, 'No such call of this client.', { reason: 'not_found' });
      return reply.code(204).header('cache-control', 'no-store').send(null);
    },
  );
}
