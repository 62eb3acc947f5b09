import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config.js';
import { FakeOpenAI, FAKE_API_KEY } from '../support/fake-openai.js';
import { builtServerPath, REPO_ROOT, startServer, type ServerProcess } from '../support/server-process.js';

const read = (name: string) => readFileSync(join(REPO_ROOT, name), 'utf8');

/** Dockerfile instructions with continuation lines joined, split into stages. */
function dockerfileStages(text: string): { from: string; instructions: { op: string; args: string }[] }[] {
  const joined = text.replace(/\\\n/g, ' ');
  const stages: { from: string; instructions: { op: string; args: string }[] }[] = [];
  for (const raw of joined.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const [op = '', ...rest] = line.split(/\s+/);
    const args = rest.join(' ');
    if (op.toUpperCase() === 'FROM') stages.push({ from: args, instructions: [] });
    else stages.at(-1)?.instructions.push({ op: op.toUpperCase(), args });
  }
  return stages;
}

describe('the Dockerfile and railway.json, read as text (no Docker engine here)', () => {
  const dockerfile = read('Dockerfile');
  const stages = dockerfileStages(dockerfile);
  const final = stages.at(-1)!;
  const finalOps = (op: string) => final.instructions.filter((i) => i.op === op);

  it('is multi-stage on a pinned Node LTS slim image, with no ADD and absolute WORKDIRs', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(dockerfile).toMatch(/^ARG NODE_IMAGE=node:(22|24)-[a-z]+-slim$/m);
    for (const stage of stages) expect(stage.from).not.toMatch(/:latest\b/);
    const all = stages.flatMap((s) => s.instructions);
    expect(all.filter((i) => i.op === 'ADD')).toEqual([]);
    for (const workdir of all.filter((i) => i.op === 'WORKDIR')) expect(workdir.args).toMatch(/^\//);
  });

  it('runs production dependencies and dist/ only, as a non-root user', () => {
    expect(finalOps('RUN').some((r) => /npm ci --omit=dev/.test(r.args))).toBe(true);
    const copies = finalOps('COPY').map((c) => c.args);
    expect(copies).toContain('--from=build /app/dist ./dist');
    expect(copies.filter((c) => !c.startsWith('--from')).every((c) => /^package\.json package-lock\.json/.test(c))).toBe(true);
    const user = finalOps('USER');
    expect(user).toHaveLength(1);
    expect(user[0]!.args).not.toMatch(/^(root|0)(:|$)/);
    const ops = final.instructions.map((i) => i.op);
    expect(ops.indexOf('USER')).toBeLessThan(ops.indexOf('CMD'));
  });

  it('exposes the port, honours $PORT, checks /healthz with node (no curl) and starts node directly', () => {
    expect(finalOps('EXPOSE')).toHaveLength(1);
    expect(finalOps('ENV').map((e) => e.args).join(' ')).toMatch(/PORT=8000/);
    // Dual-stack, as the service's own default (Railway's private network is IPv6-only).
    expect(finalOps('ENV').map((e) => e.args).join(' ')).toMatch(/HOST=:: /);
    const healthcheck = finalOps('HEALTHCHECK')[0]?.args ?? '';
    expect(healthcheck).toContain('/healthz');
    expect(healthcheck).toContain('process.env.PORT');
    expect(healthcheck).not.toMatch(/curl|wget/);
    expect(JSON.parse(finalOps('CMD')[0]!.args)).toEqual(['node', 'dist/server.js']);
    expect((JSON.parse(read('package.json')) as { scripts: { start: string } }).scripts.start).toBe('node dist/server.js');
  });

  it('.dockerignore keeps secrets, git and local modules out of the build context', () => {
    const ignored = read('.dockerignore').split('\n').map((l) => l.trim());
    for (const entry of ['.git', 'node_modules', 'dist', '.env', 'test']) expect(ignored).toContain(entry);
  });

  it('railway.json builds the Dockerfile, gates deploys on /readyz and restarts on failure', () => {
    const railway = JSON.parse(read('railway.json')) as {
      build: { builder: string; dockerfilePath: string };
      deploy: { startCommand?: string; healthcheckPath: string; healthcheckTimeout: number; restartPolicyType: string; restartPolicyMaxRetries: number; drainingSeconds: number };
    };
    expect(railway.build).toEqual({ builder: 'DOCKERFILE', dockerfilePath: 'Dockerfile' });
    // A startCommand would silently replace the image's CMD (node as PID 1, so SIGTERM arrives).
    expect(railway.deploy.startCommand).toBeUndefined();
    expect(railway.deploy).toMatchObject({ healthcheckPath: '/readyz', restartPolicyType: 'ON_FAILURE' });
    expect(railway.deploy.healthcheckTimeout).toBeGreaterThan(0);
    expect(railway.deploy.restartPolicyMaxRetries).toBeGreaterThan(0);
    // Railway's SIGTERM-to-SIGKILL window outlasts the service's own shutdown bound.
    const { shutdownTimeoutMs } = loadConfig({ OPENAI_API_KEY: 'sk-x', ALLOWED_ORIGINS: 'https://www.espn.com' });
    expect(railway.deploy.drainingSeconds * 1000).toBeGreaterThan(shutdownTimeoutMs);
  });
});

describe('the production start, exactly as the image runs it', () => {
  let dir: string;
  let fake: FakeOpenAI;
  let server: ServerProcess | undefined;
  const healthcheck = () => {
    const args = JSON.parse(/HEALTHCHECK[^\n]*\n\s*CMD (\[.*\])/.exec(read('Dockerfile'))![1]!) as string[];
    expect(args[0]).toBe('node');
    return args.slice(1);
  };
  const runHealthcheck = (port: string) =>
    spawnSync(process.execPath, healthcheck(), { env: { PATH: process.env.PATH, PORT: port }, timeout: 10_000 }).status;

  beforeAll(async () => {
    builtServerPath();
    dir = mkdtempSync(join(tmpdir(), 'token-service-prod-'));
    for (const file of ['package.json', 'package-lock.json']) cpSync(join(REPO_ROOT, file), join(dir, file));
    cpSync(join(REPO_ROOT, 'dist'), join(dir, 'dist'), { recursive: true });
    const install = spawnSync('npm', ['ci', '--omit=dev', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: dir, encoding: 'utf8' });
    if (install.status !== 0) throw new Error(`npm ci --omit=dev failed: ${install.stderr}`);
    fake = await FakeOpenAI.start();
  }, 180_000);

  afterAll(async () => {
    await server?.stop();
    await fake?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('has no dev dependency installed', () => {
    const listed = spawnSync('npm', ['ls', '--omit=dev', '--depth=0', '--json'], { cwd: dir, encoding: 'utf8' });
    const names = Object.keys((JSON.parse(listed.stdout) as { dependencies: Record<string, unknown> }).dependencies);
    for (const dev of ['typescript', 'vitest', 'tsx', 'eslint', 'playwright-core']) expect(names).not.toContain(dev);
  });

  it('starts, answers /healthz (also to the image HEALTHCHECK), mints, and stops on SIGTERM', async () => {
    server = await startServer({ OPENAI_API_KEY: FAKE_API_KEY, OPENAI_BASE_URL: fake.baseUrl, ALLOWED_ORIGINS: 'https://www.espn.com', NODE_ENV: 'production' }, dir);
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
    const port = new URL(server.url).port;
    expect(runHealthcheck(port)).toBe(0);
    const minted = await fetch(`${server.url}/v1/realtime/token`, { method: 'POST', headers: { origin: 'https://www.espn.com' } });
    expect(minted.status).toBe(200);
    server.child.kill('SIGTERM');
    expect((await server.exited).code).toBe(0);
    expect(runHealthcheck(port)).toBe(1);
  });

  it("with the image's HOST (::) it answers over IPv4 and IPv6 alike, and gates on /readyz", async () => {
    server = await startServer({ OPENAI_API_KEY: FAKE_API_KEY, OPENAI_BASE_URL: fake.baseUrl, ALLOWED_ORIGINS: 'https://www.espn.com', HOST: '::' }, dir);
    const { port } = new URL(server.url);
    for (const host of ['127.0.0.1', '[::1]']) {
      const ready = await fetch(`http://${host}:${port}/readyz`);
      expect(ready.status, host).toBe(200);
      expect(await ready.json()).toMatchObject({ status: 'ready' });
      const minted = await fetch(`http://${host}:${port}/v1/realtime/token`, { method: 'POST', headers: { origin: 'https://www.espn.com' } });
      expect(minted.status, host).toBe(200);
    }
    server.child.kill('SIGTERM');
    expect((await server.exited).code).toBe(0);
  });
});
