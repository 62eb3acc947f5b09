import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CHROMIUM, CHROMIUM_ARGS } from '../support/browser.js';
import { requireCommand } from '../support/commands.js';
import { startDemo, type DemoProcess } from '../support/demo-process.js';

requireCommand(CHROMIUM, 'apt-get install chromium');

/** Swagger UI in real headless Chromium against `npm run demo`, clicked as a newcomer would. */
describe('/docs of the running demo, in a real browser', () => {
  let demo: DemoProcess;
  let browser: Browser;

  beforeAll(async () => {
    demo = await startDemo({ LOG_FORMAT: 'json' });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    demo?.kill();
  });

  async function tryItOut(page: Page, docsUrl: string) {
    await page.goto(docsUrl);
    const operation = page.locator('#operations-realtime-post_v1_realtime_token');
    await operation.locator('.opblock-summary').click();
    await operation.getByRole('button', { name: 'Try it out' }).click();
    // The documented Origin comes prefilled from its example, so Execute is not blocked by it.
    expect(await operation.locator('tr[data-param-name="Origin"] input').inputValue()).toBe('https://www.espn.com');
    const answer = page.waitForResponse((response) => response.url().endsWith('/v1/realtime/token'));
    await operation.getByRole('button', { name: 'Execute' }).click();
    const response = await answer;
    const shown = operation.locator('.live-responses-table .response-col_description pre').first();
    await shown.waitFor();
    return { response, operation, shownBody: await shown.innerText() };
  }

  it('"Try it out" then "Execute" on the token route mints a fake secret (200), on localhost and 127.0.0.1', async () => {
    const port = new URL(demo.url).port;
    for (const host of ['localhost', '127.0.0.1']) {
      const page = await browser.newPage();
      const { response, operation, shownBody } = await tryItOut(page, `http://${host}:${port}/docs`);
      expect(response.status(), host).toBe(200);
      // The browser sent the page's own origin, which only the demo allows.
      expect(await response.request().headerValue('origin')).toBe(`http://${host}:${port}`);
      expect(await operation.locator('.live-responses-table tbody .response-col_status').first().innerText()).toBe('200');
      const shown = JSON.parse(shownBody) as { client_secret: string; session_id: string };
      expect(shown.client_secret).toMatch(/^ek_fake/);
      expect(shown.session_id).toMatch(/^sess_fake/);
      await page.close();
    }
  });

  it('"Try it out" on POST /v1/realtime/calls sends the example SDP offer as application/sdp and shows the answer (201)', async () => {
    const page = await browser.newPage();
    await page.goto(`${demo.url}/docs`);
    const operation = page.locator('#operations-realtime-post_v1_realtime_calls');
    await operation.locator('.opblock-summary').click();
    await operation.getByRole('button', { name: 'Try it out' }).click();
    // The request body's media type defaults to the first documented one, and its editor holds the SDP example.
    expect(await operation.locator('.body-param-content-type select').inputValue()).toBe('application/sdp');
    expect(await operation.locator('.body-param textarea').inputValue()).toMatch(/^v=0\r?\n/);
    const answer = page.waitForResponse((response) => response.url().includes('/v1/realtime/calls'));
    await operation.getByRole('button', { name: 'Execute' }).click();
    const response = await answer;
    expect(response.status()).toBe(201);
    expect(await response.request().headerValue('content-type')).toMatch(/^application\/sdp/);
    expect(response.headers()['location']).toMatch(/^\/v1\/realtime\/calls\/rtc_fake/);
    expect(await operation.locator('.live-responses-table tbody .response-col_status').first().innerText()).toBe('201');
    const shown = operation.locator('.live-responses-table .response-col_description pre').first();
    await shown.waitFor();
    expect(await shown.innerText()).toMatch(/^v=0/);
    // Hang it up from the same page (the same client), so the demo's two slots per client stay free.
    const hungUp = await page.evaluate(async (location) => (await fetch(location, { method: 'DELETE' })).status, response.headers()['location']!);
    expect(hungUp).toBe(204);
    await page.close();
  });

  it('shows, above the fold, what the service is and the route to try', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    await page.goto(`${demo.url}/docs`);
    await page.locator('#operations-realtime-post_v1_realtime_token').waitFor();
    const visible = async (text: string) => page.getByText(text, { exact: false }).first().isVisible();
    expect(await visible('Realtime token service')).toBe(true);
    expect(await visible('Try it out')).toBe(true);
    const route = await page.locator('#operations-realtime-post_v1_realtime_token').boundingBox();
    expect(route?.y ?? Infinity).toBeLessThan(800);
    await page.close();
  });
});
