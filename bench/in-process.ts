// In-process figures, no sockets between the load and the app: app.inject() against the loopback fake.
// - a default mint, median of many (what the service itself adds on top of OpenAI's latency)
// - the worst case when OpenAI hangs, with the default timeouts and retries
// - a mint while the circuit breaker is open (what the breaker saves)
import type { FastifyInstance } from 'fastify';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { FakeOpenAI, FAKE_API_KEY } from '../test/support/fake-openai.js';

const ORIGIN = 'https://www.espn.com';

/** The service in-process against the fake, limits out of the way (also used by bench/calls.ts). */
export async function appFor(fake: FakeOpenAI, env: Record<string, string> = {}): Promise<FastifyInstance> {
  const config = loadConfig({
    OPENAI_API_KEY: FAKE_API_KEY,
    OPENAI_BASE_URL: fake.baseUrl,
    ALLOWED_ORIGINS: ORIGIN,
    RATE_LIMIT_PER_MINUTE: '1000000',
    // One load generator is one client: no daily quota in a benchmark.
    MINTS_PER_CLIENT_PER_DAY: '0',
    LOG_LEVEL: 'silent',
    ...env,
  });
  const app = await buildApp(config);
  await app.ready();
  return app;
}

const mint = (app: FastifyInstance) =>
  app.inject({ method: 'POST', url: '/v1/realtime/token', headers: { origin: ORIGIN, 'content-type': 'application/json' }, payload: '{}' });

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!;
}

async function timed(n: number, run: () => Promise<{ statusCode: number }>, expected: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const started = performance.now();
    const response = await run();
    times.push(performance.now() - started);
    if (response.statusCode !== expected) throw new Error(`expected ${expected}, got ${response.statusCode}`);
  }
  return times.sort((a, b) => a - b);
}

export async function inProcessFigures(): Promise<string[]> {
  const notes: string[] = [];
  const fake = await FakeOpenAI.start({ keepRequests: false });

  const app = await appFor(fake);
  await timed(300, () => mint(app), 200); // warm-up
  const mints = await timed(3000, () => mint(app), 200);
  notes.push(
    `In-process default mint (app.inject, LOG_LEVEL=silent, loopback fake with 0 ms latency): median ${quantile(mints, 0.5).toFixed(3)} ms, p99 ${quantile(mints, 0.99).toFixed(3)} ms over ${mints.length} sequential mints.`,
  );
  await app.close();

  // Defaults: OPENAI_TIMEOUT_MS=10000, OPENAI_MAX_RETRIES=2, CIRCUIT_BREAKER_THRESHOLD=1 to open it at once.
  const hanging = await appFor(fake, { CIRCUIT_BREAKER_THRESHOLD: '1' });
  fake.script({ kind: 'hang' }, { kind: 'hang' }, { kind: 'hang' });
  const [worst] = await timed(1, () => mint(hanging), 504);
  notes.push(
    `Worst case when OpenAI hangs, default timeout and retries (3 attempts x 10 s + two jittered backoffs): ${(worst! / 1000).toFixed(2)} s, then 504 (backoffs of at most 0.2 s and 0.4 s here; the hard deadline is 3 x 10 s + 2 x 2 s = 34 s).`,
  );
  const open = await timed(2000, () => mint(hanging), 503);
  notes.push(
    `With the breaker open, a mint fails fast (503, no call to OpenAI): median ${(quantile(open, 0.5) * 1000).toFixed(0)} µs, p99 ${(quantile(open, 0.99) * 1000).toFixed(0)} µs, in-process. Each such request saves the ${(worst! / 1000).toFixed(0)} s wait and 3 upstream attempts.`,
  );
  await hanging.close();
  await fake.close();
  return notes;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const note of await inProcessFigures()) process.stdout.write(`${note}\n`);
}
