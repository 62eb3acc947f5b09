// npm run bench: self-contained figures for the service against a loopback fake OpenAI, next to a
// bare baseline on the same fake. Writes BENCHMARKS.md. Figures, not asserts.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { createInterface } from 'node:readline';
import autocannon from 'autocannon';
import { loadConfig } from '../src/config.js';
import { buildClientSecretRequest, buildInstructions, resolveChoice } from '../src/realtime/session.js';
import { FAKE_API_KEY } from '../test/support/fake-openai.js';
import { inProcessFigures } from './in-process.js';

const DURATION_S = Number(process.env.BENCH_DURATION ?? 8);
const ORIGIN = 'https://www.espn.com';
const root = new URL('../', import.meta.url).pathname;

interface Proc {
  child: ChildProcess;
  url: string;
}

const children = new Set<ChildProcess>();
// Whatever happens to this script, it leaves no server behind.
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

function launch(args: string[], env: Record<string, string>, pattern: RegExp): Promise<Proc> {
  const child = spawn(process.execPath, args, { cwd: root, env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  return new Promise((resolve, reject) => {
    const rl = createInterface({ input: child.stdout });
    rl.on('line', (line) => {
      const match = pattern.exec(line);
      if (match?.[1]) resolve({ child, url: match[1] });
    });
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited ${code}`)));
  });
}

async function stop(proc: Proc): Promise<void> {
  const exited = new Promise((resolve) => proc.child.once('exit', resolve));
  proc.child.kill('SIGTERM');
  await exited;
}

function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return Math.round(kb / 1024);
}

async function startFake(latencyMs: number): Promise<Proc> {
  return launch(['--import', 'tsx', 'scripts/fake-openai.ts'], { LATENCY_MS: String(latencyMs) }, /"baseUrl":"([^"]+)"/);
}

async function startService(baseUrl: string, extra: Record<string, string> = {}): Promise<Proc & { readyMs: number }> {
  const started = performance.now();
  const proc = await launch(
    ['dist/server.js'],
    {
      OPENAI_API_KEY: FAKE_API_KEY,
      OPENAI_BASE_URL: baseUrl,
      ALLOWED_ORIGINS: ORIGIN,
      HOST: '127.0.0.1',
      PORT: '0',
      RATE_LIMIT_PER_MINUTE: '1000000',
      LOG_LEVEL: 'info',
      ...extra,
    },
    /Server listening at (http:\/\/127\.0\.0\.1:\d+)/,
  );
  // Time to the first healthy answer, from spawn.
  for (;;) {
    const ok = await fetch(`${proc.url}/healthz`).then((r) => r.ok, () => false);
    if (ok) break;
    await new Promise((r) => setTimeout(r, 5));
  }
  // The service logs a line per request: drain stdout so the pipe never blocks it.
  proc.child.stdout?.resume();
  return { ...proc, readyMs: performance.now() - started };
}

/** The service's default upstream body, for the baseline to send too. */
function defaultSessionBody(): string {
  const config = loadConfig({ OPENAI_API_KEY: FAKE_API_KEY, ALLOWED_ORIGINS: ORIGIN });
  const choice = resolveChoice(config, {});
  return JSON.stringify(buildClientSecretRequest(config, choice, buildInstructions(config, choice)));
}

async function startBaseline(baseUrl: string): Promise<Proc> {
  return launch(
    ['bench/baseline.mjs'],
    { OPENAI_BASE_URL: baseUrl, OPENAI_API_KEY: FAKE_API_KEY, BASELINE_BODY: defaultSessionBody() },
    /Server listening at (http:\/\/127\.0\.0\.1:\d+)/,
  );
}

/** CPU time (user + system) a process has used, in ms, from /proc (clock ticks of 10 ms). */
function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

interface Figures {
  rps: number;
  /** CPU the server process spent per answered request: what its throughput would be on a core of its own. */
  cpuUsPerRequest: number;
  p50: number;
  p975: number;
  p99: number;
  errors: number;
  non2xx: number;
}

async function load(server: Proc, connections: number, extra: Partial<autocannon.Options> = {}): Promise<Figures> {
  const url = server.url;
  const opts: autocannon.Options = {
    url: `${url}/v1/realtime/token`,
    method: 'POST',
    headers: { origin: ORIGIN, 'content-type': 'application/json' },
    body: '{}',
    connections,
    duration: DURATION_S,
    ...extra,
  };
  // A short warm-up, not counted: JIT, keep-alive pools.
  await autocannon({ ...opts, duration: 1 });
  const cpuBefore = cpuMs(server.child.pid!);
  const result = await autocannon(opts);
  const cpuUsed = cpuMs(server.child.pid!) - cpuBefore;
  return {
    rps: Math.round(result.requests.average),
    cpuUsPerRequest: Math.round((cpuUsed * 1000) / Math.max(1, result.requests.total)),
    p50: result.latency.p50,
    p975: result.latency.p97_5,
    p99: result.latency.p99,
    errors: result.errors + result.timeouts,
    non2xx: result.non2xx,
  };
}

async function coldWarm(url: string): Promise<{ coldMs: number; warmMs: number }> {
  const once = async () => {
    const started = performance.now();
    const response = await fetch(`${url}/v1/realtime/token`, { method: 'POST', headers: { origin: ORIGIN } });
    await response.arrayBuffer();
    return performance.now() - started;
  };
  const coldMs = await once();
  const warm: number[] = [];
  for (let i = 0; i < 200; i++) warm.push(await once());
  warm.sort((a, b) => a - b);
  return { coldMs, warmMs: warm[Math.floor(warm.length / 2)]! };
}

const fmt = (n: number) => (Number.isInteger(n) ? String(n) : n.toFixed(2));
const rows: string[] = [];
const notes: string[] = [];

for (const latency of [0, 300]) {
  const fake = await startFake(latency);
  const baseline = await startBaseline(fake.url);
  const service = await startService(fake.url);
  if (latency === 0) {
    const { coldMs, warmMs } = await coldWarm(service.url);
    notes.push(`Cold mint (first request, new upstream connection): ${coldMs.toFixed(1)} ms; warm mint (median of 200 sequential): ${warmMs.toFixed(2)} ms, 0 ms upstream latency.`);
    notes.push(`Start to first healthy /healthz answer: ${service.readyMs.toFixed(0)} ms (spawn of node dist/server.js included).`);
  }
  for (const connections of [1, 50]) {
    const base = await load(baseline, connections);
    const svc = await load(service, connections);
    const ratio = base.rps > 0 ? svc.rps / base.rps : 0;
    rows.push(
      `| ${latency} ms | ${connections} | ${svc.rps} | ${fmt(svc.p50)} | ${fmt(svc.p975)} / ${fmt(svc.p99)} | ${svc.cpuUsPerRequest} | ${base.rps} | ${fmt(base.p50)} | ${fmt(base.p975)} / ${fmt(base.p99)} | ${base.cpuUsPerRequest} | ${ratio.toFixed(2)} | ${fmt(svc.p99 - base.p99)} | ${svc.errors + svc.non2xx} |`,
    );
    process.stdout.write(`${rows.at(-1)}\n`);
  }
  notes.push(
    `Peak RSS after the ${latency} ms runs: service ${peakRssMb(service.child.pid!)} MB, baseline ${peakRssMb(baseline.child.pid!)} MB.`,
  );
  await stop(service);
  await stop(baseline);
  await stop(fake);
}

// Warm pool: paced default mints (5/s, below the refill rate) against a 300 ms OpenAI.
{
  const fake = await startFake(300);
  const service = await startService(fake.url, { TOKEN_POOL_SIZE: '10', TOKEN_POOL_REFILL_PER_SECOND: '20' });
  await new Promise((r) => setTimeout(r, 1000)); // let the pool fill (10 mints at 20/s, 300 ms each)
  const pooled = await load(service, 1, { overallRate: 5 });
  const stats = (await (await fetch(`${service.url}/`)).json()) as { token_pool: { hits: number; misses: number } };
  notes.push(
    `Warm pool (TOKEN_POOL_SIZE=10, 300 ms upstream, 1 connection at 5 req/s): p50 ${fmt(pooled.p50)} ms, p99 ${fmt(pooled.p99)} ms, ${stats.token_pool.hits} hits / ${stats.token_pool.misses} misses (warm-up included).`,
  );
  await stop(service);
  await stop(fake);
}

notes.push(...(await inProcessFigures()));

const cpu = cpus()[0]?.model ?? 'unknown CPU';
const table = [
  '# Benchmarks',
  '',
  'Written by `npm run bench` (bench/run.ts): a loopback fake OpenAI with fixed latency, the built service',
  '(`node dist/server.js`, limits raised, `LOG_LEVEL=info` with stdout drained), and a baseline: a bare Fastify',
  'route forwarding to the same fake (and the same session body) through undici with no checks and no logging',
  `(bench/baseline.mjs, plain node). autocannon, POST \`{}\` with an allowed Origin, ${DURATION_S} s per run after a 1 s warm-up.`,
  'Latencies in ms. CPU µs/req is the server process\'s own CPU time per answered request (from /proc): unlike req/s it',
  'does not depend on how the two cores are shared with the fake and the load generator. ratio = service/baseline req/s.',
  '',
  `Machine: ${cpu}, ${cpus().length} cores, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}. Fake, service, baseline and load generator share the cores.`,
  '',
  '| upstream | conns | service req/s | p50 | p97.5 / p99 | CPU µs/req | baseline req/s | p50 | p97.5 / p99 | CPU µs/req | ratio | p99 added | errors |',
  '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ...rows,
  '',
  ...notes.map((n) => `- ${n}`),
  '',
];
writeFileSync(new URL('../BENCHMARKS.md', import.meta.url), table.join('\n'));
process.stdout.write(`${table.join('\n')}\n`);
