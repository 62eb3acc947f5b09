import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDemo, type DemoProcess } from '../support/demo-process.js';

describe('npm run demo', () => {
  let demo: DemoProcess;

  beforeAll(async () => {
    // A real key and a Redis URL in the caller's environment must not reach the demo.
    demo = await startDemo({ OPENAI_API_KEY: 'sk-real-key-must-be-ignored', REDIS_URL: 'redis://127.0.0.1:1' });
  }, 90_000);

  afterAll(() => demo?.kill());

  const curl = () => {
    const match = /curl -s (\S+) -H 'Origin: ([^']+)' -H 'Content-Type: application\/json' -d '([^']*)'/.exec(demo.output());
    if (!match) throw new Error(`no curl line in:\n${demo.output()}`);
    return { url: match[1]!, origin: match[2]!, body: match[3]! };
  };

  it('says at start, and again in its banner, that OpenAI is fake', () => {
    const first = demo.output().split('\n').find((line) => line.includes('OpenAI'));
    expect(first).toMatch(/OpenAI is FAKE in this demo/);
    expect(demo.output()).toMatch(/OpenAI: +FAKE/);
    expect(demo.output()).toContain(`Docs:    ${demo.url}/docs`);
  });

  it('mints through its printed curl: a secret marked fake, from the fake', async () => {
    const { url, origin, body } = curl();
    expect(url).toBe(`${demo.url}/v1/realtime/token`);
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
    const port = new URL(url).port;
    for (const self of [`http://localhost:${port}`, `http://127.0.0.1:${port}`]) {
      expect((await fetch(url, { method: 'POST', headers: { origin: self } })).status, self).toBe(200);
    }
    expect((await fetch(url, { method: 'POST' })).status).toBe(403);
    expect((await fetch(url, { method: 'POST', headers: { origin: 'https://evil.example' } })).status).toBe(403);
    expect((await fetch(`${demo.url}/readyz`)).status).toBe(200);
    expect(demo.output()).not.toContain('sk-real-key-must-be-ignored');
  });

  it('relays a call through its printed curl, which the service ends after 60 s, and the printed DELETE ends it', async () => {
    const start = /curl -si (\S+) -H 'Origin: ([^']+)' -H 'Content-Type: application\/sdp' --data-binary '([^']*)'/.exec(demo.output());
    const end = /curl -si -X DELETE (\S+)<call_id> -H 'Origin: ([^']+)'/.exec(demo.output());
    expect(start && end, demo.output()).toBeTruthy();
    const started = await fetch(start![1]!, { method: 'POST', headers: { origin: start![2]!, 'content-type': 'application/sdp' }, body: start![3]! });
    expect(started.status).toBe(201);
    expect(Number(started.headers.get('x-call-ends-at')) - Date.now() / 1000).toBeLessThanOrEqual(61);
    const callId = started.headers.get('location')!.split('/').at(-1)!;
    expect(`${end![1]}${callId}`).toBe(new URL(started.headers.get('location')!, demo.url).href);
    expect((await fetch(`${end![1]}${callId}`, { method: 'DELETE', headers: { origin: end![2]! } })).status).toBe(204);
    expect(demo.output()).toContain(`Page:    ${demo.url}/demo/`);
  });

  it('Ctrl-C (SIGINT to the process group) stops the service and the fake, cleanly', async () => {
    const { url } = curl();
    process.kill(-demo.child.pid!, 'SIGINT');
    // npm reports a script stopped by Ctrl-C by dying of the same signal, as a shell expects; the
    // demo itself closes both servers, says so, and exits 0 (close-with-grace), with no second try.
    expect([{ code: null, signal: 'SIGINT' }, { code: 0, signal: null }]).toContainEqual(await demo.exited);
    expect(demo.output()).toContain('demo stopped: the service and the fake OpenAI are closed.');
    expect(demo.output()).not.toMatch(/second SIGINT|killed by timeout|demo stopped by an error/);
    await expect(fetch(url, { method: 'POST' })).rejects.toThrow();
  });
});
