import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { freePort } from '../support/redis-server.js';
import { builtServerPath, REPO_ROOT, runServerToExit, startServer, useProcessFixtures } from '../support/server-process.js';

const PRETEND_NODE_20 = fileURLToPath(new URL('../fixtures/pretend-node-20.mjs', import.meta.url));

/** Runs a command to its end; its exit code and output. */
function run(command: string, args: string[], env: Record<string, string | undefined>) {
  return new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn(command, args, { cwd: REPO_ROOT, env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function expectNodeRefusal(result: { code: number | null; stdout: string; stderr: string }, version: RegExp) {
  expect(result.code).toBe(1);
  expect(result.stdout).toBe('');
  const lines = result.stderr.trim().split('\n');
  expect(lines, result.stderr).toHaveLength(1);
  expect(lines[0]).toMatch(/^This service needs Node 24 or newer, and this is Node /);
  expect(lines[0]).toMatch(version);
  expect(lines[0]).toMatch(/nvm install/);
  // it stopped before the service loaded: no undici failure, no stack
  expect(result.stderr).not.toMatch(/undici|TypeError|\n\s+at /);
}

describe('a Node older than 24 stops at once with one line saying how to get Node 24', () => {
  it('node dist/server.js (npm start, the image), and a real older Node when the machine has one', async () => {
    const result = await run(process.execPath, [builtServerPath()], { NODE_OPTIONS: `--import=${PRETEND_NODE_20}` });
    expectNodeRefusal(result, /Node 20\.19\.0\./);
    // Debian's own /usr/bin/node is older on the machines this runs on; elsewhere the pretend run stands for it.
    const found = spawnSync('/usr/bin/node', ['-p', 'process.versions.node'], { encoding: 'utf8' });
    const version = found.status === 0 ? found.stdout.trim() : '';
    if (Number.parseInt(version, 10) < 24) {
      expectNodeRefusal(await run('/usr/bin/node', [builtServerPath()], {}), new RegExp(`Node ${version.replaceAll('.', '\\.')}\\.`));
    }
  });

  it('npm run demo, as package.json spells it', async () => {
    const pkg = JSON.parse(readFileSync(`${REPO_ROOT}/package.json`, 'utf8')) as { scripts: Record<string, string> };
    const [tool, ...args] = (pkg.scripts.demo ?? '').split(' ');
    expect(tool).toBe('tsx');
    expect(args.slice(0, 2)).toEqual(['--import', './src/node-guard.ts']);
    const result = await run(process.execPath, [`${REPO_ROOT}/node_modules/tsx/dist/cli.mjs`, ...args], {
      NODE_OPTIONS: `--import=${PRETEND_NODE_20}`,
    });
    expectNodeRefusal(result, /Node 20\.19\.0\./);
  });
});

describe('the built server with operator settings', () => {
  const p = useProcessFixtures();
  const { env } = p;

  it('a half-set auth config (AUTH_ISSUER alone) refuses to boot: exit 1, one line naming it', async () => {
    const result = await runServerToExit({ ...env(), AUTH_ISSUER: 'https://issuer.example', AUTH_AUDIENCE: 'parker' });
    expect(result.code).toBe(1);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/AUTH_ISSUER checks nothing while caller authentication is off/);
    expect(lines[0]).toMatch(/AUTH_AUDIENCE/);
    expect(result.stdout).toBe('');
  });

  it('METRICS_PORT: a second listener for /metrics alone, 404 on PORT; both close on SIGTERM', async () => {
    const metricsPort = await freePort();
    const server = (p.server = await startServer({ ...env(), METRICS_PORT: String(metricsPort) }));
    const metricsUrl = `http://127.0.0.1:${metricsPort}`;
    await expect.poll(() => server.lines.some((l) => l.includes('"listener":"metrics"') && l.includes('Server listening at'))).toBe(true);
    expect((await fetch(`${server.url}/metrics`)).status).toBe(404);
    const scraped = await fetch(`${metricsUrl}/metrics`);
    expect(scraped.status).toBe(200);
    expect(await scraped.text()).toMatch(/^realtime_ready 1$/m);
    expect((await fetch(`${metricsUrl}/healthz`)).status).toBe(404);
    // the boot summary names it; no warning about a public /metrics
    const summary = server.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'service configured');
    expect(summary).toMatchObject({ metrics: 'own_port', level: 'info' });
    expect(server.lines.some((l) => l.includes('/metrics is public'))).toBe(false);

    server.child.kill('SIGTERM');
    expect(await server.exited).toEqual({ code: 0, signal: null });
    for (const url of [server.url, metricsUrl]) {
      const { port } = new URL(url);
      const closed = await new Promise<boolean>((resolve) => {
        const socket = connect(Number(port), '127.0.0.1');
        socket.once('connect', () => {
          socket.destroy();
          resolve(false);
        });
        socket.once('error', () => resolve(true));
      });
      expect(closed, url).toBe(true);
    }
  });

  it('METRICS_PORT already taken: the process stops (exit 1) instead of serving without its metrics', async () => {
    const metricsPort = await freePort();
    const holder = await startServer({ ...env(), PORT: String(metricsPort) });
    try {
      const result = await runServerToExit({ ...env(), HOST: '127.0.0.1', PORT: '0', METRICS_PORT: String(metricsPort) });
      expect(result.code).toBe(1);
      expect(result.stdout).toMatch(/could not listen/);
      expect(result.stdout).toMatch(/EADDRINUSE/);
    } finally {
      await holder.stop();
    }
  });
});
