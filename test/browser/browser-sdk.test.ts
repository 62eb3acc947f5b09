import type { Server } from 'node:http';
import type { OpenAIRealtimeWebRTC } from '@openai/agents-realtime';
import type { FastifyInstance } from 'fastify';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../src/config.js';
import { resolveChoice } from '../../src/realtime/choices.js';
import { buildInstructions, buildSession } from '../../src/realtime/session.js';
import { answerAsOpenAI, installAckWatch, startSdkStage, type AgentsRealtimeGlobal, type OpenAISide, type SdkStage } from '../support/agents-sdk.js';
import { LogCapture } from '../support/app.js';
import { CHROMIUM } from '../support/browser.js';
import { requireCommand } from '../support/commands.js';
import { FAKE_API_KEY, type FakeOpenAI } from '../support/fake-openai.js';
import { waitUntil } from '../support/wait.js';

requireCommand(CHROMIUM, 'apt-get install chromium');

const OPENAI_CALLS_URL = 'https://api.openai.com/v1/realtime/calls';
const ACK_TIMEOUT_WARNING = 'Timed out waiting for session.updated ack';
/** Shaped like a client secret only because the SDK refuses anything else in a browser. */
const PLACEHOLDER_KEY = 'ek_placeholder_the_service_ignores';

type SdkPage = AgentsRealtimeGlobal & { openaiSide: OpenAISide; sdkSession: { close(): void } };

/**
 * Every request the page made (fetches, the bundle, the document), and its console's warnings and
 * errors; the page also gets `watchAck`.
 */
async function watch(page: Page): Promise<{ urls: string[]; console: string[] }> {
  await page.addInitScript(installAckWatch);
  const seen = { urls: [] as string[], console: [] as string[] };
  page.on('request', (request) => seen.urls.push(request.url()));
  page.on('console', (message) => {
    if (message.type() === 'warning' || message.type() === 'error') seen.console.push(message.text());
  });
  return seen;
}

describe('the official @openai/agents-realtime client in a real browser', () => {
  let fake: FakeOpenAI;
  let site: { server: Server; origin: string };
  let browser: Browser;
  let config: Config;
  let service: { app: FastifyInstance; url: string };
  const logs = new LogCapture();

  let stage: SdkStage;

  beforeAll(async () => {
    stage = await startSdkStage(logs);
    ({ fake, site, config, service, browser } = stage);
  });

  afterAll(() => stage?.stop());

  it("RealtimeSession (WebRTC) connects with the service's ek_ secret, fetched by an async apiKey", async () => {
    const page = await browser.newPage();
    const seen = await watch(page);
    // What the service answered the page's token request.
    type TokenAnswer = { client_secret: string; session_id: string };
    const tokenAnswers: Promise<TokenAnswer>[] = [];
    page.on('response', (response) => {
      if (response.url() === `${service.url}/v1/realtime/token` && response.request().method() === 'POST') tokenAnswers.push(response.json() as Promise<TokenAnswer>);
    });
    const calls: { authorization?: string; sdk?: string; contentType?: string; offer: string }[] = [];
    const blocked: string[] = [];
    // Intercepting anything makes Playwright answer every CORS preflight itself, so the route is
    // armed only once the secret is fetched: the token request's preflight reaches the real service.
    await page.exposeFunction('armOpenAI', async () => {
      await page.route('**/*', async (route) => {
        const request = route.request();
        if (request.url() === OPENAI_CALLS_URL && request.method() === 'POST') {
          const headers = await request.allHeaders();
          const offer = request.postData() ?? '';
          calls.push({ authorization: headers.authorization, sdk: headers['x-openai-agents-sdk'], contentType: headers['content-type'], offer });
          const answer = await page.evaluate(answerAsOpenAI, offer);
          await route.fulfill({
            status: 201,
            headers: { location: '/v1/realtime/calls/rtc_page_1', 'access-control-allow-origin': site.origin, 'access-control-expose-headers': 'Location' },
            contentType: 'application/sdp',
            body: answer,
          });
          return;
        }
        if (request.url().startsWith(`${site.origin}/`) || request.url().startsWith(`${service.url}/`)) return route.continue();
        // The machine has no outside network, and the SDK must not need one: refuse and remember.
        blocked.push(request.url());
        return route.abort();
      });
    });
    await page.goto(site.origin);

    const outcome = await page.evaluate(
      async (tokenUrl) => {
        const { RealtimeAgent, RealtimeSession } = (globalThis as unknown as SdkPage).AgentsRealtime;
        const agent = new RealtimeAgent({ name: 'Parker', instructions: 'Commentate.' });
        // In a browser the SDK refuses a key that is not ephemeral before it touches the network.
        let refusal = '';
        try {
          await new RealtimeSession(agent).connect({ apiKey: 'sk-not-ephemeral' });
        } catch (error) {
          refusal = (error as Error).message;
        }

        const session = new RealtimeSession(agent);
        (globalThis as unknown as SdkPage).sdkSession = session;
        const order: string[] = [];
        const transport = session.transport as OpenAIRealtimeWebRTC;
        (globalThis as unknown as SdkPage).watchAck(transport, order);
        await session.connect({
          apiKey: async () => {
            const response = await fetch(tokenUrl, {
              method: 'POST',
              headers: { 'Content-Type': 'application/json' },
              body: JSON.stringify({ difficulty: 'savage', sport: 'nba' }),
            });
            const body = (await response.json()) as { client_secret: string };
            await (globalThis as unknown as { armOpenAI: () => Promise<void> }).armOpenAI();
            return body.client_secret;
          },
        });
        order.push('connect resolved');
        const side = (globalThis as unknown as SdkPage).openaiSide;
        return {
          refusal,
          order,
          status: transport.status,
          callId: transport.callId,
          channel: transport.connectionState.dataChannel?.readyState,
          channelLabel: transport.connectionState.dataChannel?.label,
          openaiReceived: side.received,
          openaiSent: side.sent,
        };
      },
      `${service.url}/v1/realtime/token`,
    );

    expect(outcome.refusal).toContain('requires an ephemeral client key');
    // connect() resolved on OpenAI's ack, not on the SDK's 5 s fallback: the ack came first, and
    // the fallback's warning never showed.
    expect(outcome.order).toEqual(['session.updated arrived', 'connect resolved']);
    expect(outcome.openaiReceived[0]).toBe('session.update');
    expect(outcome.openaiSent).toEqual(['session.updated']);
    expect(seen.console.filter((text) => text.includes(ACK_TIMEOUT_WARNING))).toEqual([]);
    expect(outcome).toMatchObject({ status: 'connected', channel: 'open', channelLabel: 'oai-events', callId: 'rtc_page_1' });

    // The offer reached "OpenAI" with the exact secret the service handed out, as is.
    const minted = await Promise.all(tokenAnswers);
    expect(minted).toHaveLength(1);
    const secret = minted[0]?.client_secret ?? '';
    expect(secret).toMatch(/^ek_fake/);
    expect(calls).toHaveLength(1);
    expect(calls[0]).toMatchObject({ authorization: `Bearer ${secret}`, contentType: 'application/sdp' });
    expect(calls[0]?.sdk).toMatch(/^openai-agents-sdk\.0\.20\./);
    expect(calls[0]?.offer).toContain('m=application');

    // The token request's CORS preflight was the service's to answer, not Playwright's.
    expect(logs.find('request completed')).toContainEqual(expect.objectContaining({ method: 'OPTIONS', url: '/v1/realtime/token', status: 204 }));
    const audit = logs.find('client secret minted');
    expect(audit).toHaveLength(1);
    expect(audit[0]).toMatchObject({ audit: 'client_secret_minted', origin: site.origin, difficulty: 'savage', session_id: minted[0]?.session_id });

    // Nothing but the page, the service and the intercepted calls URL: no CDN, no other OpenAI URL.
    expect(blocked).toEqual([]);
    const elsewhere = seen.urls.filter((url) => !url.startsWith(`${site.origin}/`) && !url.startsWith(`${service.url}/`) && url !== OPENAI_CALLS_URL);
    expect(elsewhere).toEqual([]);

    await page.evaluate(() => (globalThis as unknown as SdkPage).sdkSession.close());
    await page.close();
  });

  it("the WebRTC transport pointed at the service's calls route (baseUrl) connects unchanged, and the page holds no credential", async () => {
    const page = await browser.newPage();
    const seen = await watch(page);
    // Everything the service told the page, headers and bodies, to search for credentials.
    const told: Promise<string>[] = [];
    page.on('response', (response) => {
      if (!response.url().startsWith(`${service.url}/`)) return;
      // A 204 has no body for the browser to keep.
      const body = response.status() === 204 ? Promise.resolve('') : response.text();
      told.push(body.then((text) => `${JSON.stringify(response.headers())}\n${text}`));
    });
    const mintsBefore = fake.mintRequests.length;
    // OpenAI's side answers the relayed offer: the fake asks a second RTCPeerConnection in the page.
    fake.answerSdp = (offer) => page.evaluate(answerAsOpenAI, offer);
    await page.goto(site.origin);

    const baseUrl = `${service.url}/v1/realtime/calls?difficulty=savage&sport=nba`;
    const outcome = await page.evaluate(
      async ({ baseUrl, placeholder }) => {
        const { RealtimeAgent, RealtimeSession, OpenAIRealtimeWebRTC } = (globalThis as unknown as SdkPage).AgentsRealtime;
        const transport = new OpenAIRealtimeWebRTC({ baseUrl });
        const session = new RealtimeSession(new RealtimeAgent({ name: 'Parker', instructions: 'Commentate.' }), { transport });
        (globalThis as unknown as SdkPage).sdkSession = session;
        const order: string[] = [];
        (globalThis as unknown as SdkPage).watchAck(transport, order);
        // The SDK insists on an ek_-looking key in a browser; the service, with auth off, ignores it.
        await session.connect({ apiKey: placeholder });
        order.push('connect resolved');
        return { order, status: transport.status, callId: transport.callId, channel: transport.connectionState.dataChannel?.readyState };
      },
      { baseUrl, placeholder: PLACEHOLDER_KEY },
    );

    expect(outcome.order).toEqual(['session.updated arrived', 'connect resolved']);
    expect(seen.console.filter((text) => text.includes(ACK_TIMEOUT_WARNING))).toEqual([]);
    expect(outcome).toMatchObject({ status: 'connected', channel: 'open' });

    // The call id the SDK read from Location is the one "OpenAI" issued.
    const issued = [...fake.calls.keys()];
    expect(issued).toHaveLength(1);
    expect(outcome.callId).toBe(issued[0]);

    // The service, not the page, asked OpenAI: with its own key, and a session built for savage / nba.
    const relayed = fake.callRequests;
    expect(relayed).toHaveLength(1);
    expect(relayed[0]?.schemaErrors).toEqual([]);
    expect(relayed[0]?.headers.authorization).toBe(`Bearer ${FAKE_API_KEY}`);
    const choice = resolveChoice(config, { difficulty: 'savage', sport: 'nba' });
    const session = (relayed[0]?.body as { session: { instructions: string } }).session;
    expect(session).toEqual(buildSession(config, choice, buildInstructions(config, choice)));
    expect(session.instructions).toContain('brutally honest');
    expect(session.instructions).toContain('nba');

    // The browser's CORS preflight (Authorization, X-OpenAI-Agents-SDK, application/sdp) reached the service.
    const preflights = logs.find('request completed').filter((line) => line.method === 'OPTIONS' && String(line.url).startsWith('/v1/realtime/calls?'));
    expect(preflights.map((line) => line.status)).toEqual([204]);
    expect(logs.find('call started').at(-1)).toMatchObject({ audit: 'call_started', call_id: issued[0], origin: site.origin, difficulty: 'savage' });

    await page.evaluate(() => (globalThis as unknown as SdkPage).sdkSession.close());
    expect(fake.hangups).toEqual([]);
    // The SDK's close() only closes the peer; the call is ended through the service.
    const hungUp = await page.evaluate(async (url) => (await fetch(url, { method: 'DELETE' })).status, `${service.url}/v1/realtime/calls/${outcome.callId}`);
    expect(hungUp).toBe(204);
    await waitUntil(() => fake.hangups.some((h) => h.callId === issued[0] && h.status === 200), 'the hangup at the fake');

    // No credential reached the page: no secret was minted, and nothing the service said holds a key.
    expect(fake.mintRequests.length).toBe(mintsBefore);
    const everything = (await Promise.all(told)).join('\n');
    expect(everything).toContain(`/v1/realtime/calls/${issued[0]}`);
    expect(everything).not.toMatch(/ek_/);
    expect(everything).not.toContain(FAKE_API_KEY);
    const elsewhere = seen.urls.filter((url) => !url.startsWith(`${site.origin}/`) && !url.startsWith(`${service.url}/`));
    expect(elsewhere).toEqual([]);
    await page.close();
  });
});
