import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { fileURLToPath } from 'node:url';
import type * as AgentsRealtime from '@openai/agents-realtime';
import { build } from 'esbuild';
import type { FastifyInstance } from 'fastify';
import { chromium, type Browser } from 'playwright-core';
import { buildApp } from '../../src/app.js';
import { loadConfig, type Config } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';
import { testEnv, type LogCapture } from './app.js';
import { CHROMIUM, CHROMIUM_ARGS } from './browser.js';
import { FakeOpenAI } from './fake-openai.js';

/** The page's globals: the real SDK, bundled for the browser, and `watchAck` (see installAckWatch). */
export type AgentsRealtimeGlobal = {
  AgentsRealtime: typeof AgentsRealtime;
  watchAck: (transport: AgentsRealtime.OpenAIRealtimeWebRTC, order: string[]) => void;
};

/** Where the SDK page serves its bundle. */
export const SDK_BUNDLE_PATH = '/agents-realtime.js';

let bundle: Promise<string> | undefined;

/**
 * `@openai/agents-realtime` as one IIFE for a page (global `AgentsRealtime`), built once per test
 * file: the published package is ESM with bare imports, which a page without an import map cannot load.
 */
export function agentsSdkBundle(): Promise<string> {
  bundle ??= build({
    stdin: {
      contents: "export { RealtimeAgent, RealtimeSession, OpenAIRealtimeWebRTC } from '@openai/agents-realtime';",
      resolveDir: fileURLToPath(new URL('../..', import.meta.url)),
      loader: 'js',
    },
    bundle: true,
    format: 'iife',
    globalName: 'AgentsRealtime',
    // The browser build: the SDK's browser shims, which turn on its "ek_ keys only" check.
    platform: 'browser',
    target: 'chrome120',
    write: false,
    logLevel: 'silent',
  }).then((result) => result.outputFiles[0]?.text ?? '');
  return bundle;
}

/** A site on its own loopback origin: a blank page that loads the SDK bundle. */
export async function sdkSite(): Promise<{ server: Server; origin: string }> {
  const code = await agentsSdkBundle();
  const server = createServer((req, res) => {
    if (req.url === SDK_BUNDLE_PATH) {
      res.writeHead(200, { 'content-type': 'text/javascript' });
      res.end(code);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/html' });
    res.end(`<!doctype html><title>game page</title><script src="${SDK_BUNDLE_PATH}"></script><p>watching the game</p>`);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, origin: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}

/** What OpenAI's side of the call saw and said on the data channel, kept on the page. */
export interface OpenAISide {
  peer: RTCPeerConnection;
  /** Event types the SDK sent, in order. */
  received: string[];
  /** Event types sent back, in order. */
  sent: string[];
}

/**
 * Runs IN THE PAGE (pass it to page.evaluate): OpenAI's side of the call, a second
 * RTCPeerConnection. It answers the SDK's offer with a real SDP answer, its ICE candidates included
 * (the SDK posts its offer before gathering, so the answer's candidates are the only ones either
 * side gets), and acks the SDK's `session.update` with `session.updated` as the Realtime API does.
 */
export async function answerAsOpenAI(offer: string): Promise<string> {
  const peer = new RTCPeerConnection();
  const side: OpenAISide = { peer, received: [], sent: [] };
  (globalThis as unknown as { openaiSide: OpenAISide }).openaiSide = side;
  peer.ondatachannel = ({ channel }) => {
    channel.onmessage = ({ data }) => {
      const event = JSON.parse(String(data)) as { type: string; session?: Record<string, unknown> };
      side.received.push(event.type);
      // OpenAI applies what the page sends to the one session the call has: a test that runs the
      // server's side (the fake's sideband) is told through `openaiApplies`, when it defines it.
      void (globalThis as unknown as { openaiApplies?: (event: unknown) => Promise<void> }).openaiApplies?.(event);
      if (event.type !== 'session.update') return;
      const reply = { type: 'session.updated', event_id: `event_${side.sent.length + 1}`, session: { ...event.session, object: 'realtime.session', id: 'sess_page' } };
      channel.send(JSON.stringify(reply));
      side.sent.push(reply.type);
    };
  };
  const gathered = new Promise<void>((resolve) => {
    peer.onicegatheringstatechange = () => {
      if (peer.iceGatheringState === 'complete') resolve();
    };
  });
  await peer.setRemoteDescription({ type: 'offer', sdp: offer });
  await peer.setLocalDescription(await peer.createAnswer());
  await gathered;
  return peer.localDescription?.sdp ?? '';
}

/**
 * Runs IN THE PAGE (pass it to page.addInitScript): defines `watchAck(transport, order)`, which puts
 * its own listener on the SDK's data channel as soon as the channel exists, before the SDK's ack
 * listener. It records 'session.updated arrived' ahead of whatever the caller records once connect()
 * resolves only if connect() resolved on OpenAI's ack, not on the SDK's 5 s fallback.
 */
export function installAckWatch(): void {
  (globalThis as unknown as AgentsRealtimeGlobal).watchAck = (transport, order) => {
    transport.on('connection_change', (status) => {
      if (status !== 'connecting') return;
      transport.connectionState.dataChannel?.addEventListener('message', ({ data }) => {
        if ((JSON.parse(String(data)) as { type: string }).type === 'session.updated') order.push('session.updated arrived');
      });
    });
  };
}

/**
 * What both Agents SDK browser tests stand on: the fake OpenAI, the page's site, the service
 * allowing that site's origin (listening, its logs into `logs`) and Chromium.
 */
export interface SdkStage {
  fake: FakeOpenAI;
  site: { server: Server; origin: string };
  config: Config;
  service: { app: FastifyInstance; url: string };
  browser: Browser;
  stop(): Promise<void>;
}

export async function startSdkStage(logs: LogCapture): Promise<SdkStage> {
  const fake = await FakeOpenAI.start();
  const site = await sdkSite();
  const config = loadConfig(testEnv(fake.baseUrl, { ALLOWED_ORIGINS: JSON.stringify([site.origin]) }));
  // Overload check off: Chromium shares these cores, and a stall it causes in this process is not the server's.
  const app = await buildApp(config, { logger: createLogger(config, logs), maxEventLoopDelayMs: Number.POSITIVE_INFINITY });
  const service = { app, url: await app.listen({ port: 0, host: '127.0.0.1' }) };
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  return {
    fake,
    site,
    config,
    service,
    browser,
    async stop() {
      await browser.close();
      await app.close();
      site.server.close();
      await fake.close();
    },
  };
}
