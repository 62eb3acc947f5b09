// Sidebands: what watching every relayed call costs, and how fast a spend cap ends calls. The fake
// OpenAI runs in a process of its own (bench/sideband-fake.ts), so this process's CPU and memory are
// the service's alone. Figures, not asserts; the whole run takes well under a minute.
// - memory per open sideband: 200 sidebands open (the Sidebands hub alone), RSS and heap delta / 200;
// - CPU per priced event: the whole service in-process (sideband -> call manager -> CallSpend), CPU
//   time of this process over many response.done events / their number;
// - crossing -> hangup: 200 calls of 200 clients on one replica, one crossing response.done each,
//   time from the fake sending it to the hangup reaching the fake, p50/p99.
// Run: npx tsx bench/sideband.ts
import { fork, type ChildProcess } from 'node:child_process';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { FastifyInstance } from 'fastify';
import { pino } from 'pino';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { SIDEBAND_OPEN_TIMEOUT_MS, Sidebands, type Sideband } from '../src/realtime/sideband.js';
import { SDP_OFFER } from '../test/support/calls.js';
import { FAKE_API_KEY } from '../test/support/fake-openai.js';
import { createFakeCall, defaultCallSession } from '../test/support/sideband.js';
import { InMemoryStandInCallSpend, type StandInCaps } from '../test/support/stand-in-call-spend.js';
import { waitUntil } from '../test/support/wait.js';
import { quantile } from './support.js';

const ORIGIN = 'https://www.espn.com';
const OPEN_SIDEBANDS = Number(process.env.SIDEBANDS ?? 200);
const PRICED_EVENTS = Number(process.env.PRICED_EVENTS ?? 20_000);
const CROSSING_CALLS = Number(process.env.CROSSING_CALLS ?? 200);

/** $0.070816 at gpt-realtime's prices: over a $0.05 cap in one response. */
const USAGE = {
  total_tokens: 1310,
  input_tokens: 300,
  output_tokens: 1010,
  input_token_details: { text_tokens: 100, audio_tokens: 200, image_tokens: 0, cached_tokens: 40, cached_tokens_details: { text_tokens: 40, audio_tokens: 0, image_tokens: 0 } },
  output_token_details: { text_tokens: 10, audio_tokens: 1000 },
};

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const settle = async () => {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
};

/** The fake in its own process, driven over IPC. */
class FakeProcess {
  private nextId = 0;
  private readonly pending = new Map<number, (message: Record<string, unknown>) => void>();

  private constructor(
    private readonly child: ChildProcess,
    readonly baseUrl: string,
  ) {
    child.on('message', (message: Record<string, unknown>) => {
      const id = message.id as number | undefined;
      if (id !== undefined) this.pending.get(id)?.(message);
    });
  }

  static async start(): Promise<FakeProcess> {
    const child = fork(new URL('./sideband-fake.ts', import.meta.url).pathname, [], { execArgv: ['--import', 'tsx'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    process.on('exit', () => child.kill('SIGKILL'));
    const baseUrl = await new Promise<string>((resolve, reject) => {
      child.once('message', (message: { baseUrl: string }) => resolve(message.baseUrl));
      child.once('exit', (code) => reject(new Error(`fake exited ${code}`)));
    });
    return new FakeProcess(child, baseUrl);
  }

  ask<T extends Record<string, unknown>>(command: Record<string, unknown>): Promise<T> {
    const id = ++this.nextId;
    return new Promise((resolve) => {
      this.pending.set(id, (message) => {
        this.pending.delete(id);
        resolve(message as T);
      });
      this.child.send({ id, ...command });
    });
  }

  async open(): Promise<number> {
    return (await this.ask<{ open: number }>({ cmd: 'open' })).open;
  }

  async close(): Promise<void> {
    const exited = new Promise((resolve) => this.child.once('exit', resolve));
    await this.ask({ cmd: 'close' });
    await exited;
  }
}

async function memoryPerSideband(fake: FakeProcess): Promise<string> {
  const { session, locked, model } = defaultCallSession(fake.baseUrl);
  const callIds: string[] = [];
  for (let i = 0; i < OPEN_SIDEBANDS + 10; i++) callIds.push(await createFakeCall(fake, session));
  const hub = new Sidebands({ baseUrl: fake.baseUrl, apiKey: FAKE_API_KEY, lockSession: true, openTimeoutMs: SIDEBAND_OPEN_TIMEOUT_MS, log: pino({ level: 'silent' }) });
  const listener = { usage: () => undefined, lost: () => undefined };
  // Warm-up: undici's WebSocket code loads on first use; that is not per sideband.
  const warm = callIds.slice(0, 10).map((id) => hub.watch(id, model, locked, listener));
  await waitUntil(() => hub.openCount === 10, 'the warm-up sidebands');
  for (const sideband of warm) sideband.close();
  await settle();
  const before = process.memoryUsage();
  const open: Sideband[] = callIds.slice(10).map((id) => hub.watch(id, model, locked, listener));
  await waitUntil(() => hub.openCount === OPEN_SIDEBANDS, 'every sideband open', 30_000);
  await settle();
  const after = process.memoryUsage();
  for (const sideband of open) sideband.close();
  const kib = (bytes: number) => (bytes / OPEN_SIDEBANDS / 1024).toFixed(1);
  return `Memory per open sideband (${OPEN_SIDEBANDS} open in one process, after GC): RSS +${kib(after.rss - before.rss)} KiB, JS heap +${kib(after.heapUsed - before.heapUsed)} KiB, off-heap buffers +${kib(after.external + after.arrayBuffers - before.external - before.arrayBuffers)} KiB.`;
}

async function serviceOn(fake: FakeProcess, caps: StandInCaps): Promise<{ app: FastifyInstance; spend: InMemoryStandInCallSpend }> {
  const config = loadConfig({
    OPENAI_API_KEY: FAKE_API_KEY,
    OPENAI_BASE_URL: fake.baseUrl,
    ALLOWED_ORIGINS: ORIGIN,
    RATE_LIMIT_PER_MINUTE: '1000000',
    MINTS_PER_CLIENT_PER_DAY: '0',
    LOG_LEVEL: 'silent',
  });
  const spend = new InMemoryStandInCallSpend(caps);
  const app = await buildApp(config, { spend });
  await app.ready();
  return { app, spend };
}

/** One call per client (10.x.y.z), every sideband open at the fake. */
async function startCalls(app: FastifyInstance, fake: FakeProcess, count: number): Promise<string[]> {
  const before = (await fake.ask<{ callIds: string[] }>({ cmd: 'calls' })).callIds.length;
  for (let i = 1; i <= count; i++) {
    const response = await app.inject({
      method: 'POST',
      url: '/v1/realtime/calls',
      remoteAddress: `10.9.${(i >> 8) & 255}.${i & 255}`,
      headers: { origin: ORIGIN, 'content-type': 'application/sdp' },
      payload: SDP_OFFER,
    });
    if (response.statusCode !== 201) throw new Error(`service answered ${response.statusCode}: ${response.body}`);
  }
  const callIds = (await fake.ask<{ callIds: string[] }>({ cmd: 'calls' })).callIds.slice(before);
  await waitUntil(async () => (await fake.open()) >= count, 'every call watched', 30_000);
  return callIds;
}

async function cpuPerPricedEvent(fake: FakeProcess): Promise<string> {
  const { app, spend } = await serviceOn(fake, {});
  const callIds = await startCalls(app, fake, 20);
  const perCall = Math.ceil(PRICED_EVENTS / callIds.length);
  await fake.ask({ cmd: 'push', callIds, usage: USAGE, perCall: 50 });
  await waitUntil(() => spend.charged.length >= 50 * callIds.length, 'the warm-up events', 30_000);
  await settle();
  const target = spend.charged.length + perCall * callIds.length;
  const cpu = process.cpuUsage();
  const started = performance.now();
  await fake.ask({ cmd: 'push', callIds, usage: USAGE, perCall });
  await waitUntil(() => spend.charged.length >= target, 'every event priced', 30_000);
  const used = process.cpuUsage(cpu);
  const wallMs = performance.now() - started;
  const events = perCall * callIds.length;
  await app.close();
  const us = (used.user + used.system) / events;
  return `CPU per priced event (response.done through sideband -> call manager -> stand-in CallSpend, ${events} events over ${callIds.length} calls): ${us.toFixed(1)} µs (user ${(used.user / events).toFixed(1)}, system ${(used.system / events).toFixed(1)}), ${Math.round(events / (wallMs / 1000))} events/s on this process.`;
}

async function crossingToHangup(fake: FakeProcess): Promise<string> {
  const { app } = await serviceOn(fake, { clientCapUsd: 0.05 });
  const callIds = await startCalls(app, fake, CROSSING_CALLS + 10);
  // The first hangups of a fresh process pay for lazy code and new upstream connections: warm up.
  const warm = await fake.ask<{ delays: number[] }>({ cmd: 'cross', callIds: callIds.slice(0, 10), usage: USAGE, gapMs: 5 });
  const { delays } = await fake.ask<{ delays: number[] }>({ cmd: 'cross', callIds: callIds.slice(10), usage: USAGE, gapMs: 5 });
  await app.close();
  const sorted = [...delays].sort((a, b) => a - b);
  return `Crossing event -> hangup at OpenAI (${sorted.length} calls of ${sorted.length} clients on one replica, one crossing response.done each, 5 ms apart; the fake's clock, 1 ms resolution): p50 ${quantile(sorted, 0.5)} ms, p99 ${quantile(sorted, 0.99)} ms, max ${sorted.at(-1)} ms (after 10 warm-up calls, whose worst was ${Math.max(...warm.delays)} ms). Another replica's calls of the client are ended on its next look at the caps (at most 1 s later; see test/redis/calls-spend-redis.test.ts).`;
}

export async function sidebandFigures(): Promise<string[]> {
  const fake = await FakeProcess.start();
  try {
    return [await memoryPerSideband(fake), await cpuPerPricedEvent(fake), await crossingToHangup(fake)];
  } finally {
    await fake.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const started = performance.now();
  for (const note of await sidebandFigures()) process.stdout.write(`${note}\n`);
  process.stdout.write(`(bench/sideband.ts ran ${((performance.now() - started) / 1000).toFixed(1)} s)\n`);
}
