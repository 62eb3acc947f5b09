import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, CHROMIUM_ARGS } from '../support/browser.js';
import { requireCommand } from '../support/commands.js';
import { startDemo, type DemoProcess } from '../support/demo-process.js';

requireCommand(CHROMIUM, 'apt-get install chromium');

const EXAMPLES = new URL('../../examples/', import.meta.url);

/** A newcomer's own page on another port: a copy of the example page, as a dev server would serve it. */
async function ownPage(): Promise<{ server: Server; origin: string }> {
  const files: Record<string, [string, string]> = {
    '/': ['demo/index.html', 'text/html'],
    '/demo.js': ['demo/demo.js', 'text/javascript'],
    '/demo.css': ['demo/demo.css', 'text/css'],
    '/webrtc-client.js': ['webrtc-client.js', 'text/javascript'],
  };
  const server = createServer((req, res) => {
    const [file, type] = files[(req.url ?? '/').split('?')[0]!] ?? [];
    if (!file) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-type': type! }).end(readFileSync(new URL(file, EXAMPLES)));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { server, origin: `http://127.0.0.1:${(server.address() as { port: number }).port}` };
}

/** The example page of `npm run demo`, clicked through in real headless Chromium. */
describe('the demo\'s example page, in a real browser', () => {
  let demo: DemoProcess;
  let own: { server: Server; origin: string };
  let browser: Browser;

  beforeAll(async () => {
    own = await ownPage();
    demo = await startDemo({ LOG_FORMAT: 'json', DEMO_ORIGINS: own.origin });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    demo?.kill();
    own?.server.close();
  });

  const text = (page: Page, id: string) => page.locator(`#${id}`).innerText();

  async function bothFlows(page: Page) {
    const failures: string[] = [];
    page.on('pageerror', (error) => failures.push(error.message));

    // Token flow: a minted (fake) secret on the page, then the SDP exchange with the fake's web_rtc_url (CORS).
    await page.getByRole('button', { name: 'Mint a client secret' }).click();
    await expect.poll(() => text(page, 'client-secret')).toMatch(/^ek_fake/);
    expect(await text(page, 'web-rtc-url')).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1\/realtime\/calls$/);
    await page.getByRole('button', { name: 'Send the offer to web_rtc_url with it' }).click();
    await expect.poll(() => text(page, 'token-answer')).toMatch(/^v=0/);
    expect(await text(page, 'token-status')).toMatch(/OpenAI answered the offer/);

    // Relay flow: the offer through the service, the answer back, then DELETE.
    await page.getByRole('button', { name: 'Start a relayed call' }).click();
    await expect.poll(() => text(page, 'relay-answer')).toMatch(/^v=0/);
    expect(await text(page, 'call-id')).toMatch(/^rtc_fake/);
    const endsAt = Number((await text(page, 'ends-at')).split(' ')[0]);
    // The demo ends its calls after 60 s (MAX_CALL_SECONDS), not the service's default 30 minutes.
    expect(endsAt - Date.now() / 1000).toBeGreaterThan(50);
    expect(endsAt - Date.now() / 1000).toBeLessThanOrEqual(61);
    await page.getByRole('button', { name: 'Hang up (DELETE)' }).click();
    await expect.poll(() => text(page, 'relay-status')).toBe('Call ended: DELETE answered 204.');
    expect(failures).toEqual([]);
  }

  it('at /demo/ on the demo itself: mints and shows an ek_fake secret, and relays a call and shows its SDP answer', async () => {
    const page = await browser.newPage();
    await page.goto(`${demo.url}/demo/`);
    expect(await page.locator('.mv3').innerText()).toMatch(/service worker has no RTCPeerConnection and no getUserMedia[\s\S]*offscreen document/);
    await bothFlows(page);
    await page.close();
  });

  it('on a page of one\'s own on another origin, allowed with DEMO_ORIGINS', async () => {
    const page = await browser.newPage();
    await page.goto(`${own.origin}/?service=${encodeURIComponent(demo.url)}`);
    expect(await text(page, 'service')).toBe(demo.url);
    await bothFlows(page);
    await page.close();
  });
});
