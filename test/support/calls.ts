import type { FastifyInstance, LightMyRequestResponse } from 'fastify';
import { SITE_ORIGIN } from './app.js';
import type { FakeOpenAI } from './fake-openai.js';
import { waitUntil } from './wait.js';

/** What a browser's offer looks like closely enough for the service (it checks the start and the size). */
export const SDP_OFFER = [
  'v=0',
  'o=- 1234567890 2 IN IP4 127.0.0.1',
  's=-',
  't=0 0',
  'a=group:BUNDLE 0 1',
  'm=audio 9 UDP/TLS/RTP/SAVPF 111',
  'c=IN IP4 0.0.0.0',
  'a=mid:0',
  'a=sendrecv',
  'a=rtpmap:111 opus/48000/2',
  'm=application 9 UDP/DTLS/SCTP webrtc-datachannel',
  'c=IN IP4 0.0.0.0',
  'a=mid:1',
  'a=sctp-port:5000',
  '',
].join('\r\n');

export interface CallOptions {
  query?: string;
  headers?: Record<string, string>;
  remoteAddress?: string;
}

/** POST /v1/realtime/calls with an application/sdp body, as the Agents SDK sends it. */
export function postSdp(app: FastifyInstance, sdp = SDP_OFFER, options: CallOptions = {}): Promise<LightMyRequestResponse> {
  return app.inject({
    method: 'POST',
    url: `/v1/realtime/calls${options.query ? `?${options.query}` : ''}`,
    remoteAddress: options.remoteAddress,
    headers: { origin: SITE_ORIGIN, 'content-type': 'application/sdp', ...options.headers },
    payload: sdp,
  });
}

/** A multipart/form-data body as a browser's FormData serializes it (through undici's own encoder). */
export async function multipart(parts: Record<string, string | Blob>): Promise<{ body: Buffer; contentType: string }> {
  const form = new FormData();
  for (const [name, value] of Object.entries(parts)) form.set(name, value);
  const request = new Request('http://localhost/', { method: 'POST', body: form });
  return { body: Buffer.from(await request.arrayBuffer()), contentType: request.headers.get('content-type') ?? '' };
}

export async function postMultipart(
  app: FastifyInstance,
  parts: Record<string, string | Blob>,
  options: CallOptions = {},
): Promise<LightMyRequestResponse> {
  const { body, contentType } = await multipart(parts);
  return app.inject({
    method: 'POST',
    url: '/v1/realtime/calls',
    remoteAddress: options.remoteAddress,
    headers: { origin: SITE_ORIGIN, 'content-type': contentType, ...options.headers },
    payload: body,
  });
}

export function endCall(app: FastifyInstance, location: string, remoteAddress?: string): Promise<LightMyRequestResponse> {
  return app.inject({ method: 'DELETE', url: location, remoteAddress, headers: { origin: SITE_ORIGIN } });
}

/** The call id from a 201's Location. */
export function callIdOf(response: LightMyRequestResponse): string {
  return String(response.headers.location).split('/').pop() as string;
}

/**
 * One response.done usage of a conversation, hand-priced at gpt-realtime's rates (USD per 1M: text
 * 4 / 0.40 / 16, audio 32 / 0.40 / 64): 60 text in x 4 + 40 cached text x 0.40 + 200 audio in x 32
 * + 10 text out x 16 + 1000 audio out x 64 = 240 + 16 + 6400 + 160 + 64000 = 70816 per 1M.
 */
export const PRICED_USAGE = {
  total_tokens: 1310,
  input_tokens: 300,
  output_tokens: 1010,
  input_token_details: { text_tokens: 100, audio_tokens: 200, image_tokens: 0, cached_tokens: 40, cached_tokens_details: { text_tokens: 40, audio_tokens: 0, image_tokens: 0 } },
  output_token_details: { text_tokens: 10, audio_tokens: 1000 },
};
export const PRICED_USAGE_USD = 0.070816;

/** "Hung up within 2 s on whichever replica holds it", with room for a slow machine. */
export const CROSS_REPLICA_BOUND_MS = 4_000;

/** Starts a call from this address and waits for the service's sideband of it at the fake; returns the call id. */
export async function startWatchedCall(app: FastifyInstance, fake: FakeOpenAI, remoteAddress: string): Promise<string> {
  const response = await postSdp(app, SDP_OFFER, { remoteAddress });
  if (response.statusCode !== 201) throw new Error(`expected 201, got ${response.statusCode}: ${response.body}`);
  const callId = callIdOf(response);
  await waitUntil(() => fake.sidebandsOpen(callId) === 1, `the sideband of ${callId}`);
  return callId;
}
