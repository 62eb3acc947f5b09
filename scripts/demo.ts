// npm run demo: the service against a FAKE OpenAI on loopback, in one process, with no key and no
// Redis, so a fresh clone shows it working after `npm ci`. Only PORT (default 8000), HOST (default
// localhost), LOG_FORMAT and LOG_LEVEL are read from the environment: a real key there is ignored.
import { createServer } from 'node:net';
import closeWithGrace from 'close-with-grace';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { FakeOpenAI, FAKE_API_KEY } from '../test/support/fake-openai.js';

const SITE_ORIGIN = 'https://www.espn.com';
const say = (text: string) => process.stdout.write(`${text}\n`);

/** PORT=0 means "any free port"; the docs' own origin needs the real number before the app is built. */
async function resolvePort(raw: string | undefined): Promise<number> {
  const wanted = Number(raw?.trim() || 8000);
  if (wanted !== 0) return wanted;
  const probe = createServer().listen(0, '127.0.0.1');
  await new Promise((resolve) => probe.once('listening', resolve));
  const { port } = probe.address() as { port: number };
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

const port = await resolvePort(process.env.PORT);
const host = process.env.HOST?.trim() || 'localhost';
const base = `http://localhost:${port}`;

const fake = await FakeOpenAI.start({ keepRequests: false });
say(`*** OpenAI is FAKE in this demo: a loopback stand-in at ${fake.baseUrl}. Its secrets (ek_fake...) open nothing. ***`);

const config = loadConfig({
  OPENAI_API_KEY: FAKE_API_KEY,
  OPENAI_BASE_URL: fake.baseUrl,
  PORT: String(port),
  HOST: host,
  // The curl's origin, and the docs page's own so "Try it out" in /docs works. Only here: a real
  // deployment allows exactly the origins ALLOWED_ORIGINS names.
  ALLOWED_ORIGINS: JSON.stringify([SITE_ORIGIN, `http://localhost:${port}`, `http://127.0.0.1:${port}`, `http://[::1]:${port}`]),
  // A daily budget, as production should have one (README, "Protecting your key").
  GLOBAL_MINTS_PER_DAY: '1000',
  LOG_FORMAT: process.env.LOG_FORMAT || 'pretty',
  LOG_LEVEL: process.env.LOG_LEVEL || 'info',
});
const app = await buildApp(config);

closeWithGrace({ delay: config.shutdownTimeoutMs, logger: false }, async ({ err }) => {
  if (err) say(`demo stopped by an error: ${err.message}`);
  await app.close();
  await fake.close();
  say('demo stopped: the service and the fake OpenAI are closed.');
});

try {
  await app.listen({ port: config.port, host: config.host });
} catch (error) {
  const taken = (error as { code?: string }).code === 'EADDRINUSE';
  say(taken ? `Port ${port} is taken: try PORT=8001 npm run demo` : `The demo could not listen: ${String(error)}`);
  await fake.close();
  process.exit(1);
}

const body = JSON.stringify({ voice: 'cedar', difficulty: 'savage', sport: 'nba' });
say(`
  Realtime token service (demo) at ${base}
  OpenAI:  FAKE (${fake.baseUrl}); no key, no Redis, nothing leaves this machine
  Docs:    ${base}/docs   ("Try it out" on POST /v1/realtime/token works from there)
  Health:  ${base}/healthz   Ready: ${base}/readyz

  Mint a (fake) client secret:

  curl -s ${base}/v1/realtime/token -H 'Origin: ${SITE_ORIGIN}' -H 'Content-Type: application/json' -d '${body}'

  Without the Origin header the answer is 403: that is the origin check at work.
  Ctrl-C stops the service and the fake.
`);
