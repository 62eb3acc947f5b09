import { connect } from 'node:net';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FakeOpenAI, FAKE_API_KEY } from './support/fake-openai.js';
import { runServerToExit, startServer, type ServerProcess } from './support/server-process.js';
import { SITE_ORIGIN } from './support/app.js';

let fake: FakeOpenAI;
let server: ServerProcess | undefined;

beforeEach(async () => {
  fake = await FakeOpenAI.start();
});

afterEach(async () => {
  if (server && server.child.exitCode === null) {
    server.child.kill('SIGKILL');
    await server.exited;
  }
  server = undefined;
  await fake.close();
});

const env = () => ({ OPENAI_API_KEY: FAKE_API_KEY, OPENAI_BASE_URL: fake.baseUrl, ALLOWED_ORIGINS: SITE_ORIGIN });

function portIsClosed(url: string): Promise<boolean> {
  const { port } = new URL(url);
  return new Promise((resolve) => {
    const socket = connect(Number(port), '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(true));
  });
}

describe('the built server as a process', () => {
  it('refuses to start on bad config: exit 1, one line naming every bad variable, no secret', async () => {
    const result = await runServerToExit({
      OPENAI_API_KEY: 'sk-do-not-print me',
      ALLOWED_ORIGINS: 'https://ok.example/path',
      TOKEN_TTL_SECONDS: '5',
    });
    expect(result.code).toBe(1);
    const lines = result.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    for (const name of ['OPENAI_API_KEY', 'ALLOWED_ORIGINS', 'TOKEN_TTL_SECONDS']) expect(lines[0]).toContain(name);
    expect(result.stderr + result.stdout).not.toContain('sk-do-not-print');
  });

  it('on SIGTERM finishes the mint in flight, closes the port and exits 0', async () => {
    server = await startServer(env());
    fake.script({ kind: 'ok', delayMs: 800 });
    const inFlight = fetch(`${server.url}/v1/realtime/token`, { method: 'POST', headers: { origin: SITE_ORIGIN } });
    await fake.waitForMintRequests(1);
    server.child.kill('SIGTERM');
    const response = await inFlight;
    expect(response.status).toBe(200);
    expect(((await response.json()) as { client_secret: string }).client_secret).toMatch(/^ek_fake/);
    const { code, signal } = await server.exited;
    expect({ code, signal }).toEqual({ code: 0, signal: null });
    expect(await portIsClosed(server.url)).toBe(true);
    expect(server.lines.some((line) => line.includes('"shutting down"') && line.includes('SIGTERM'))).toBe(true);
    expect(server.lines.join('\n')).not.toContain(FAKE_API_KEY);
  });

  it('SIGINT also shuts down cleanly', async () => {
    server = await startServer(env());
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
    server.child.kill('SIGINT');
    expect((await server.exited).code).toBe(0);
  });
});
