// Relayed calls (POST /v1/realtime/calls), in-process against the loopback fake:
// - what the relay adds to the SDP exchange: the service's call (app.inject, which itself POSTs to the
//   fake) against the same multipart POST sent straight to the fake, median of many, interleaved;
// - how late deadline hangups come on the real clock (MAX_CALL_SECONDS=10, many calls at once).
// Run: npx tsx bench/calls.ts
import { request } from 'undici';
import { loadConfig } from '../src/config.js';
import { resolveChoice } from '../src/realtime/choices.js';
import { buildInstructions, buildSession } from '../src/realtime/session.js';
import { FakeOpenAI, FAKE_API_KEY } from '../test/support/fake-openai.js';
import { multipart, SDP_OFFER } from '../test/support/calls.js';
import { waitUntil } from '../test/support/wait.js';
import { appFor } from './in-process.js';

const ORIGIN = 'https://www.espn.com';
const SAMPLES = Number(process.env.SAMPLES ?? 500);
const DEADLINE_CALLS = Number(process.env.DEADLINE_CALLS ?? 50);


const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
const p95 = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length * 0.95)] as number;

async function relayOverhead(): Promise<void> {
  const fake = await FakeOpenAI.start({ keepRequests: false });
  const app = await appFor(fake, { MAX_CONCURRENT_CALLS_PER_CLIENT: '1000' });
  const config = loadConfig({ OPENAI_API_KEY: FAKE_API_KEY, ALLOWED_ORIGINS: ORIGIN });
  const choice = resolveChoice(config, undefined);
  const upstream = await multipart({
    sdp: new Blob([SDP_OFFER], { type: 'application/sdp' }),
    session: new Blob([JSON.stringify(buildSession(config, choice, buildInstructions(config, choice)))], { type: 'application/json' }),
  });
  let sent = 0;
  const viaService = async () => {
    sent += 1;
    const response = await app.inject({
      method: 'POST',
      url: '/v1/realtime/calls',
      // A client per request: the calls stay open (no DELETE), so one client would run out of slots.
      remoteAddress: `10.${(sent >> 16) & 255}.${(sent >> 8) & 255}.${sent & 255}`,
      headers: { origin: ORIGIN, 'content-type': 'application/sdp' },
      payload: SDP_OFFER,
    });
    if (response.statusCode !== 201) throw new Error(`service answered ${response.statusCode}: ${response.body}`);
  };
  const direct = async () => {
    const response = await request(`${fake.baseUrl}/realtime/calls`, {
      method: 'POST',
      headers: { authorization: `Bearer ${FAKE_API_KEY}`, 'content-type': upstream.contentType },
      body: upstream.body,
    });
    await response.body.text();
    if (response.statusCode !== 201) throw new Error(`fake answered ${response.statusCode}`);
  };
  const time = async (run: () => Promise<void>) => {
    const started = performance.now();
    await run();
    return performance.now() - started;
  };
  for (let i = 0; i < 50; i++) await Promise.all([viaService(), direct()]);
  const service: number[] = [];
  const straight: number[] = [];
  for (let i = 0; i < SAMPLES; i++) {
    service.push(await time(viaService));
    straight.push(await time(direct));
    await new Promise((resolve) => setImmediate(resolve));
  }
  console.log(`SDP exchange, ${SAMPLES} samples each (ms): through the service median ${median(service).toFixed(2)} p95 ${p95(service).toFixed(2)}; ` +
    `straight to the fake median ${median(straight).toFixed(2)} p95 ${p95(straight).toFixed(2)}; ` +
    `relay adds (median) ${(median(service) - median(straight)).toFixed(2)}`);
  await app.close();
  await fake.close();
}

async function hangupLateness(): Promise<void> {
  const fake = await FakeOpenAI.start();
  const app = await appFor(fake, { MAX_CALL_SECONDS: '10', MAX_CONCURRENT_CALLS_PER_CLIENT: '1000' });
  for (let i = 0; i < DEADLINE_CALLS; i++) {
    await app.inject({ method: 'POST', url: '/v1/realtime/calls', headers: { origin: ORIGIN, 'content-type': 'application/sdp' }, payload: SDP_OFFER });
  }
  await waitUntil(() => fake.hangups.length >= DEADLINE_CALLS, 'every deadline hangup', 30_000);
  const late = fake.hangups.map((hangup) => hangup.at - ((fake.calls.get(hangup.callId)?.createdAt ?? 0) + 10_000));
  console.log(`deadline hangups, ${DEADLINE_CALLS} calls of 10 s (ms late, from the fake's creation time): ` +
    `min ${Math.min(...late)} median ${median(late)} max ${Math.max(...late)}`);
  await app.close();
  await fake.close();
}

await relayOverhead();
await hangupLateness();
