import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO_ROOT } from './support/server-process.js';
import { waitUntil } from './support/wait.js';

/** `npm run demo` exactly as a newcomer types it, in its own process group as a terminal runs it. */
describe('npm run demo', () => {
  let demo: ChildProcess;
  let output = '';
  let exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  beforeAll(async () => {
    demo = spawn('npm', ['run', 'demo'], {
      cwd: REPO_ROOT,
      detached: true,
      // A real key in the caller's environment must not reach the demo, nor Redis.
      env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: '0', OPENAI_API_KEY: 'sk-real-key-must-be-ignored', REDIS_URL: 'redis://127.0.0.1:1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    demo.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    demo.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
    exited = once(demo, 'exit').then(([code, signal]) => ({ code: code as number | null, signal: signal as NodeJS.Signals | null }));
    await waitUntil(() => output.includes('Ctrl-C stops'), 'the demo banner', 60_000);
  }, 90_000);

  afterAll(async () => {
    if (demo.exitCode === null && demo.signalCode === null && demo.pid) process.kill(-demo.pid, 'SIGKILL');
  });

  const curl = () => {
    const match = /curl -s (\S+) -H 'Origin: ([^']+)' -H 'Content-Type: application\/json' -d '([^']*)'/.exec(output);
    if (!match) throw new Error(`no curl line in:\n${output}`);
    return { url: match[1]!, origin: match[2]!, body: match[3]! };
  };

  it('says at start, and again in its banner, that OpenAI is fake', () => {
    const first = output.split('\n').find((line) => line.includes('OpenAI'));
    expect(first).toMatch(/OpenAI is FAKE in this demo/);
    expect(output).toMatch(/OpenAI: +FAKE/);
    expect(output).toMatch(/Docs: +http:\/\/localhost:\d+\/docs/);
  });

  it('mints through its printed curl: a secret marked fake, from the fake', async () => {
    const { url, origin, body } = curl();
    const response = await fetch(url, { method: 'POST', headers: { origin, 'content-type': 'application/json' }, body });
    expect(response.status).toBe(200);
    const secret = (await response.json()) as { client_secret: string; session_id: string; voice: string; instructions: string };
    expect(secret.client_secret).toMatch(/^ek_fake/);
    expect(secret.session_id).toMatch(/^sess_fake/);
    expect(secret.voice).toBe('cedar');
    expect(secret.instructions).toContain('nba');
  });

  it("allows the docs' own origin (Try it out) but still refuses a request without Origin", async () => {
    const { url } = curl();
    const self = new URL(url).origin;
    expect((await fetch(url, { method: 'POST', headers: { origin: self } })).status).toBe(200);
    expect((await fetch(url, { method: 'POST' })).status).toBe(403);
    expect((await fetch(new URL('/readyz', url))).status).toBe(200);
    expect(output).not.toContain('sk-real-key-must-be-ignored');
  });

  it('Ctrl-C (SIGINT to the process group) stops the service and the fake, exit code 0', async () => {
    const { url } = curl();
    process.kill(-demo.pid!, 'SIGINT');
    // npm reports a script stopped by Ctrl-C by dying of the same signal, as a shell expects; the
    // demo itself closes both servers, says so, and exits 0 (close-with-grace), with no second try.
    expect([{ code: null, signal: 'SIGINT' }, { code: 0, signal: null }]).toContainEqual(await exited);
    expect(output).toContain('demo stopped: the service and the fake OpenAI are closed.');
    expect(output).not.toMatch(/second SIGINT|killed by timeout|demo stopped by an error/);
    await expect(fetch(url, { method: 'POST' })).rejects.toThrow();
  });
});
