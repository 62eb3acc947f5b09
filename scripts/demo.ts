// npm run demo: the service against a FAKE OpenAI on loopback, in one process, with no key and no
// Redis, so a fresh clone shows it working after `npm ci`, with an example page of both flows at
// /demo/. Only PORT (default 8000), HOST (default localhost), LOG_FORMAT, LOG_LEVEL and DEMO_ORIGINS
// (your own page's origins, added to the allowed ones) are read from the environment: a real key
// there is ignored.
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import closeWithGrace from 'close-with-grace';
import { buildApp } from '../src/app.js';
import { ConfigError, loadConfig, parseList } from '../src/config.js';
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

/** A page of yours on another origin (e.g. a dev server on :5173) that calls the demo. */
const demoOrigins = parseList(process.env.DEMO_ORIGINS ?? '');
if (!Array.isArray(demoOrigins)) {
  say(`DEMO_ORIGINS ${demoOrigins.error}: give origins as commas or a JSON array, e.g. DEMO_ORIGINS=http://localhost:5173`);
  process.exit(1);
}

const fake = await FakeOpenAI.start({ keepRequests: false });
say(`*** OpenAI is FAKE in this demo: a loopback stand-in at ${fake.baseUrl}. Its secrets (ek_fake...) open nothing. ***`);

/** A demo's calls end soon: a forgotten one would hold one of the client's two slots for a while. */
const MAX_CALL_SECONDS = 60;
let config;
try {
  config = loadConfig({
    OPENAI_API_KEY: FAKE_API_KEY,
    OPENAI_BASE_URL: fake.baseUrl,
    PORT: String(port),
    HOST: host,
    // The curl's origin, the service's own (the docs' "Try it out" and the example page), and
    // DEMO_ORIGINS. Only here: a real deployment allows exactly the origins ALLOWED_ORIGINS names.
    ALLOWED_ORIGINS: JSON.stringify([SITE_ORIGIN, `http://localhost:${port}`, `http://127.0.0.1:${port}`, `http://[::1]:${port}`, ...demoOrigins]),
    // A daily budget, as production should have one (README, "Protecting your key").
    GLOBAL_MINTS_PER_DAY: '1000',
    MAX_CALL_SECONDS: String(MAX_CALL_SECONDS),
    LOG_FORMAT: process.env.LOG_FORMAT || 'pretty',
    LOG_LEVEL: process.env.LOG_LEVEL || 'info',
  });
} catch (error) {
  if (!(error instanceof ConfigError)) throw error;
  say(`The demo could not start: ${error.message} (DEMO_ORIGINS adds to ALLOWED_ORIGINS: each a bare origin, scheme://host[:port])`);
  await fake.close();
  process.exit(1);
}
const app = await buildApp(config);

// The example page (examples/demo/, on top of examples/webrtc-client.js), on the demo only. Its
// policy lets it reach the fake's web_rtc_url, on another port, as a page reaches OpenAI's.
const EXAMPLE_FILES: Record<string, [file: string, type: string]> = {
  '': ['demo/index.html', 'text/html; charset=utf-8'],
  'demo.js': ['demo/demo.js', 'text/javascript; charset=utf-8'],
  'demo.css': ['demo/demo.css', 'text/css; charset=utf-8'],
  'webrtc-client.js': ['webrtc-client.js', 'text/javascript; charset=utf-8'],
};
const pagePolicy = `default-src 'self'; connect-src 'self' ${new URL(fake.baseUrl).origin}; object-src 'none'; base-uri 'self'; frame-ancestors 'self'`;
app.get('/demo', { schema: { hide: true } }, (_request, reply) => reply.redirect('/demo/'));
app.get<{ Params: { file: string } }>('/demo/:file', { schema: { hide: true } }, (request, reply) => {
  const entry = EXAMPLE_FILES[request.params.file];
  if (!entry) return reply.callNotFound();
  const [file, type] = entry;
  return reply
    .header('content-security-policy', pagePolicy)
    .header('cache-control', 'no-cache')
    .type(type)
    .send(readFileSync(new URL(`../examples/${file}`, import.meta.url)));
});

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
  Page:    ${base}/demo/   (both flows in a browser: token and relay, built on examples/webrtc-client.js)
  Docs:    ${base}/docs   ("Try it out" works there)
  Health:  ${base}/healthz   Ready: ${base}/readyz

  Mint a (fake) client secret:

  curl -s ${base}/v1/realtime/token -H 'Origin: ${SITE_ORIGIN}' -H 'Content-Type: application/json' -d '${body}'

  Without the Origin header the answer is 403: that is the origin check at work.

  Relay a call (the fake answers any offer; the service ends it after ${MAX_CALL_SECONDS} s), then end it
  with the id from its Location header:

  curl -si ${base}/v1/realtime/calls -H 'Origin: ${SITE_ORIGIN}' -H 'Content-Type: application/sdp' --data-binary 'v=0'
  curl -si -X DELETE ${base}/v1/realtime/calls/<call_id> -H 'Origin: ${SITE_ORIGIN}'

  Your own page on another origin: DEMO_ORIGINS=http://localhost:5173 npm run demo
  Ctrl-C stops the service and the fake.
`);
