import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { FAKE_API_KEY } from '../support/fake-openai.js';
import { runServerToExit, startServer, useProcessFixtures } from '../support/server-process.js';
import { SITE_ORIGIN } from '../support/app.js';

const p = useProcessFixtures();

const { env } = p;

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

  it('on SIGTERM, a mint slower than SHUTDOWN_TIMEOUT_MS still gets an answer (503, retry) before a clean exit', async () => {
    const server = (p.server = await startServer({ ...env(), SHUTDOWN_TIMEOUT_MS: '1500' }));
    p.fake.script({ kind: 'hang' });
    const inFlight = fetch(`${server.url}/v1/realtime/token`, { method: 'POST', headers: { origin: SITE_ORIGIN } });
    await p.fake.waitForMintRequests(1);
    server.child.kill('SIGTERM');
    const response = await inFlight;
    expect(response.status).toBe(503);
    const body = (await response.json()) as { error: { code: number; retry_after?: number } };
    expect(body.error.code).toBe(503);
    expect(body.error.retry_after).toBeGreaterThan(0);
    // closed by the service itself, not by close-with-grace's timeout (which exits 1)
    const { code } = await server.exited;
    expect(code).toBe(0);
    // one attempt: no retry was started past the shutdown's deadline
    expect(p.fake.mintRequests).toHaveLength(1);
  });

  it('on SIGTERM finishes the mint in flight, closes the port and exits 0', async () => {
    const server = (p.server = await startServer(env()));
    p.fake.script({ kind: 'ok', delayMs: 800 });
    const inFlight = fetch(`${server.url}/v1/realtime/token`, { method: 'POST', headers: { origin: SITE_ORIGIN } });
    await p.fake.waitForMintRequests(1);
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
    const server = (p.server = await startServer(env()));
    const health = await fetch(`${server.url}/healthz`);
    expect(health.status).toBe(200);
    server.child.kill('SIGINT');
    expect((await server.exited).code).toBe(0);
  });
});
