// Processes for the benchmarks: the fake OpenAI, the built service, the bare baseline, and what
// /proc says about them. Whatever happens to the bench, it leaves no server behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { loadConfig } from '../src/config.js';
import { resolveChoice } from '../src/realtime/choices.js';
import { buildClientSecretRequest, buildInstructions } from '../src/realtime/session.js';
import { FAKE_API_KEY } from '../test/support/fake-openai.js';

export const ORIGIN = 'https://www.espn.com';
const root = new URL('../', import.meta.url).pathname;

export interface Proc {
  child: ChildProcess;
  url: string;
}

const children = new Set<ChildProcess>();
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

export async function stop(proc: Proc): Promise<void> {
  const exited = new Promise((resolve) => proc.child.once('exit', resolve));
  proc.child.kill('SIGTERM');
  await exited;
}

/** Peak resident memory of a process so far (VmHWM), in MB. */
export function peakRssMb(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
  return Math.round(kb / 1024);
}

/** CPU time (user + system) a process has used, in ms, from /proc (clock ticks of 10 ms). */
export function cpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

export async function startFake(latencyMs: number, jitterMs = 0): Promise<Proc> {
  return launch(
    ['--import', 'tsx', 'scripts/fake-openai.ts'],
    { LATENCY_MS: String(latencyMs), LATENCY_JITTER_MS: String(jitterMs) },
    /"baseUrl":"([^"]+)"/,
  );
}

export async function startService(
  baseUrl: string,
  extra: Record<string, string> = {},
  nodeArgs: string[] = [],
): Promise<Proc & { readyMs: number }> {
  const started = performance.now();
  const proc = await launch(
    [...nodeArgs, 'dist/server.js'],
    {
      OPENAI_API_KEY: FAKE_API_KEY,
      OPENAI_BASE_URL: baseUrl,
      ALLOWED_ORIGINS: ORIGIN,
      HOST: '127.0.0.1',
      PORT: '0',
      RATE_LIMIT_PER_MINUTE: '1000000',
      // One load generator is one client: no daily quota in a benchmark.
      MINTS_PER_CLIENT_PER_DAY: '0',
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

export async function startBaseline(baseUrl: string, extra: Record<string, string> = {}, nodeArgs: string[] = []): Promise<Proc> {
  return launch(
    [...nodeArgs, 'bench/baseline.mjs'],
    { OPENAI_BASE_URL: baseUrl, OPENAI_API_KEY: FAKE_API_KEY, BASELINE_BODY: defaultSessionBody(), ...extra },
    /Server listening at (http:\/\/127\.0\.0\.1:\d+)/,
  );
}

export function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))] ?? Number.NaN;
}
