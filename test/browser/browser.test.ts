import { once } from 'node:events';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser, type BrowserContext } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { FakeOpenAI } from '../support/fake-openai.js';
import { LogCapture, testEnv } from '../support/app.js';
import { CHROMIUM, CHROMIUM_ARGS } from '../support/browser.js';
import { requireCommand } from '../support/commands.js';

requireCommand(CHROMIUM, 'apt-get install chromium');

const EXAMPLE = readFileSync(new URL('../../examples/webrtc-client.js', import.meta.url), 'utf8');

/** A site on its own origin serving a blank page and the example client. */
async function site(): Promise<{ server: Server; origin: string }> {
  const server = createServer((req, res) => {
    if (req.url === '/webrtc-client.js') {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(EXAMPLE);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end('<!doctype html><title>game page</title><p>watching the game</p>');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, origin: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}

async function startService(fake: FakeOpenAI, origins: string[], logs: LogCapture): Promise<{ app: FastifyInstance; url: string }> {
  const config = loadConfig(testEnv(fake.baseUrl, { ALLOWED_ORIGINS: JSON.stringify(origins) }));
  // Overload check off: Chromium shares these cores, and a stall it causes in this process is not the server's.
  const app = await buildApp(config, { logger: createLogger(config, logs), maxEventLoopDelayMs: Number.POSITIVE_INFINITY });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, url };
}

describe('in a real browser', () => {
  let fake: FakeOpenAI;
  let allowed: { server: Server; origin: string };
  let foreign: { server: Server; origin: string };
  let browser: Browser;
  let service: { app: FastifyInstance; url: string };
  const logs = new LogCapture();

  beforeAll(async () => {
    fake = await FakeOpenAI.start();
    allowed = await site();
    foreign = await site();
    service = await startService(fake, [allowed.origin], logs);
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  });

  afterAll(async () => {
    await browser?.close();
    await service?.app.close();
    allowed?.server.close();
    foreign?.server.close();
    await fake?.close();
  });

  it('a page on an allowed origin gets a secret through real CORS (preflight included)', async () => {
    const page = await browser.newPage();
    await page.goto(allowed.origin);
    const result = await page.evaluate(async (url) => {
      const response = await fetch(`${url}/v1/realtime/token`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ difficulty: 'expert', sport: 'nba' }),
      });
      return { status: response.status, body: (await response.json()) as { client_secret: string; instructions: string }, requestId: response.headers.get('x-request-id') };
    }, service.url);
    expect(result.status).toBe(200);
    expect(result.body.client_secret).toMatch(/^ek_fake/);
    expect(result.body.instructions).toContain('nba');
    expect(result.requestId).toMatch(/^[0-9a-f-]{36}$/);
    const audit = logs.find('client secret minted').at(-1);
    expect(audit?.origin).toBe(allowed.origin);
    await page.close();
  });

  it('a page on a foreign origin is refused: the browser blocks it and the service logs the refusal', async () => {
    const page = await browser.newPage();
    await page.goto(foreign.origin);
    const minted = fake.mintRequests.length;
    const outcome = await page.evaluate(async (url) => {
      const tries: string[] = [];
      // JSON needs a preflight: the browser stops at it.
      try {
        await fetch(`${url}/v1/realtime/token`, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{}' });
        tries.push('json: read');
      } catch (error) {
        tries.push(`json: ${(error as Error).name}`);
      }
      // A bodiless POST is a simple request: it reaches the service, which refuses it.
      try {
        await fetch(`${url}/v1/realtime/token`, { method: 'POST' });
        tries.push('simple: read');
      } catch (error) {
        tries.push(`simple: ${(error as Error).name}`);
      }
      return tries;
    }, service.url);
    expect(outcome).toEqual(['json: TypeError', 'simple: TypeError']);
    expect(fake.mintRequests.length).toBe(minted);
    const refusal = logs.find('request refused').at(-1);
    expect(refusal).toMatchObject({ refusal: 'origin', status: 403, origin: foreign.origin });
    await page.close();
  });

  it('the example client fetches a secret and posts its SDP offer to web_rtc_url with the secret as bearer', async () => {
    const page = await browser.newPage();
    await page.goto(allowed.origin);
    let call: { authorization?: string; contentType?: string; offer: string } | undefined;
    // Stand in for OpenAI's /realtime/calls at the network layer: answer the offer with a local peer.
    await page.route('**/realtime/calls', async (route) => {
      const request = route.request();
      const headers = await request.allHeaders();
      call = { authorization: headers.authorization, contentType: headers['content-type'], offer: request.postData() ?? '' };
      const answer = await page.evaluate(async (offer) => {
        const peer = new RTCPeerConnection();
        peer.ondatachannel = () => undefined;
        await peer.setRemoteDescription({ type: 'offer', sdp: offer });
        const description = await peer.createAnswer();
        await peer.setLocalDescription(description);
        (globalThis as unknown as { openaiPeer: RTCPeerConnection }).openaiPeer = peer;
        return description.sdp ?? '';
      }, call.offer);
      await route.fulfill({ status: 201, contentType: 'application/sdp', body: answer });
    });
    // A string, not a function: vitest would rewrite a dynamic import() inside a function.
    const session = await page.evaluate<{ signaling: string; sessionId: string }>(`(async () => {
      const { startParkerSession } = await import('/webrtc-client.js');
      const started = await startParkerSession(${JSON.stringify(service.url)}, { voice: 'marin' });
      return { signaling: started.pc.signalingState, sessionId: started.token.sessionId };
    })()`);
    expect(session.signaling).toBe('stable');
    expect(session.sessionId).toMatch(/^sess_fake/);
    expect(call?.authorization).toMatch(/^Bearer ek_fake/);
    expect(call?.contentType).toBe('application/sdp');
    expect(call?.offer).toContain('m=audio');
    await page.close();
  });

  it('the relay flow: the page posts its offer to the service, holds no credential, and ends the call with DELETE', async () => {
    const page = await browser.newPage();
    await page.goto(allowed.origin);
    const cannedAnswer = fake.answerSdp;
    // The fake OpenAI answers the relayed offer with a real peer in the page, so the handshake completes.
    fake.answerSdp = (offer) =>
      page.evaluate(async (sdp) => {
        const peer = new RTCPeerConnection();
        await peer.setRemoteDescription({ type: 'offer', sdp });
        const description = await peer.createAnswer();
        await peer.setLocalDescription(description);
        (globalThis as unknown as { openaiPeer: RTCPeerConnection }).openaiPeer = peer;
        return description.sdp ?? '';
      }, offer);
    try {
      const call = await page.evaluate<{ signaling: string; callId: string; endsAt: number }>(`(async () => {
        const { startParkerCall } = await import('/webrtc-client.js');
        const call = await startParkerCall(${JSON.stringify(service.url)}, { voice: 'marin', difficulty: 'savage' });
        const seen = { signaling: call.pc.signalingState, callId: call.callId, endsAt: call.endsAt };
        await call.close();
        return seen;
      })()`);
      expect(call.signaling).toBe('stable');
      expect(call.endsAt).toBeGreaterThan(Date.now() / 1000 + 1700);
      const relayed = fake.callRequests.at(-1);
      expect(relayed?.headers.authorization).toMatch(/^Bearer sk-test/);
      expect((relayed?.body as { session: { audio: { output: { voice: string } } } }).session.audio.output.voice).toBe('marin');
      // the page's DELETE (a CORS preflighted request) reached the service, which hung up at OpenAI
      expect(fake.calls.get(call.callId)?.hungUpAt).toBeDefined();
    } finally {
      fake.answerSdp = cannedAnswer;
      await page.close();
    }
  });

  it('serves /docs that renders in the browser under the security headers', async () => {
    const page = await browser.newPage();
    const violations: string[] = [];
    page.on('console', (message) => {
      if (/Content Security Policy|Refused to/i.test(message.text())) violations.push(message.text());
    });
    await page.goto(`${service.url}/docs`);
    await page.waitForSelector('.opblock-summary-path', { timeout: 15_000 });
    const paths = await page.$$eval('.opblock-summary-path', (nodes) => nodes.map((n) => n.textContent?.trim()));
    expect(paths).toContain('/v1/realtime/token');
    expect(violations).toEqual([]);
    await page.close();
  });
});

describe('from a real Manifest V3 extension', () => {
  let fake: FakeOpenAI;
  let context: BrowserContext;
  let profile: string;
  let service: { app: FastifyInstance; url: string } | undefined;
  const logs = new LogCapture();

  beforeAll(async () => {
    fake = await FakeOpenAI.start();
    profile = mkdtempSync(join(tmpdir(), 'parker-profile-'));
    const extension = mkdtempSync(join(tmpdir(), 'parker-extension-'));
    cpSync(new URL('../fixtures/extension/', import.meta.url), extension, { recursive: true });
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      args: [...CHROMIUM_ARGS, `--disable-extensions-except=${extension}`, `--load-extension=${extension}`],
    });
  });

  afterAll(async () => {
    await context?.close();
    await service?.app.close();
    await fake?.close();
    rmSync(profile, { recursive: true, force: true });
  });

  it("the service worker gets a secret, and the service saw the extension's Origin", async () => {
    const worker = context.serviceWorkers()[0] ?? (await context.waitForEvent('serviceworker', { timeout: 15_000 }));
    // Node's URL gives non-special schemes an opaque ("null") origin: cut scheme://id by hand.
    const extensionOrigin = /^chrome-extension:\/\/[^/]+/.exec(worker.url())?.[0] ?? worker.url();
    expect(extensionOrigin).toMatch(/^chrome-extension:\/\/[a-p]{32}$/);
    service = await startService(fake, [extensionOrigin], logs);

    const result = await worker.evaluate(
      (url) => (self as unknown as { mintSecret: (u: string) => Promise<{ status: number; body: { client_secret: string } }> }).mintSecret(url),
      service.url,
    );
    expect(result.status).toBe(200);
    expect(result.body.client_secret).toMatch(/^ek_fake/);
    const audit = logs.find('client secret minted').at(-1);
    expect(audit).toMatchObject({ origin: extensionOrigin, difficulty: 'savage' });
  });
});
