import { mkdirSync, writeFileSync } from 'node:fs';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { useFakeOpenAI } from '../support/app.js';
import { CHROMIUM, CHROMIUM_ARGS } from '../support/browser.js';
import { requireCommand } from '../support/commands.js';

requireCommand(CHROMIUM, 'apt-get install chromium');

const TOKEN = 'admin-token-0123456789-abcdefghij';
const SCREENSHOT_DIR = new URL('../../test-results/', import.meta.url);
const openai = useFakeOpenAI();

/** Counts the pixels of a PNG close to a colour, decoded by the browser itself. */
async function pixelsNear(browser: Browser, png: Buffer, rgb: [number, number, number]): Promise<{ near: number; total: number }> {
  const page = await browser.newPage();
  try {
    return await page.evaluate(
      async ({ data, rgb: [r, g, b] }) => {
        const image = new Image();
        image.src = `data:image/png;base64,${data}`;
        await image.decode();
        const canvas = document.createElement('canvas');
        canvas.width = image.width;
        canvas.height = image.height;
        const context = canvas.getContext('2d');
        if (!context) throw new Error('no 2d context');
        context.drawImage(image, 0, 0);
        const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
        let near = 0;
        for (let i = 0; i < pixels.length; i += 4) {
          if (Math.abs((pixels[i] ?? 0) - r) + Math.abs((pixels[i + 1] ?? 0) - g) + Math.abs((pixels[i + 2] ?? 0) - b) < 60) near += 1;
        }
        return { near, total: pixels.length / 4 };
      },
      { data: png.toString('base64'), rgb },
    );
  } finally {
    await page.close();
  }
}

describe('the /admin page in a real browser', () => {
  let browser: Browser;

  beforeAll(async () => {
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
  });

  it('asks for the token (401, Basic), then shows two clients\' mints and draws the 24 h chart with uPlot', async () => {
    const t = await openai.app({ ADMIN_TOKEN: TOKEN, TRUST_PROXY: '1', GLOBAL_MINTS_PER_DAY: '50' });
    for (let i = 0; i < 3; i++) expect((await t.mint({}, { 'x-forwarded-for': '203.0.113.7' })).statusCode).toBe(200);
    expect((await t.mint({}, { 'x-forwarded-for': '198.51.100.20' })).statusCode).toBe(200);
    const base = await t.app.listen({ port: 0, host: '127.0.0.1' });

    // Chromium meets the Basic challenge: with no credentials it shows nothing, with wrong ones the 401.
    const stranger = await browser.newPage();
    await expect(stranger.goto(`${base}/admin`)).rejects.toThrow(/ERR_INVALID_AUTH_CREDENTIALS/);
    await stranger.close();
    const wrong = await browser.newContext({ httpCredentials: { username: 'operator', password: 'wrong-token' } });
    const refused = await (await wrong.newPage()).goto(`${base}/admin`);
    expect(refused?.status()).toBe(401);
    expect(await refused?.headerValue('www-authenticate')).toBe('Basic realm="admin"');
    expect(await refused?.text()).not.toContain('Top clients');
    await wrong.close();

    const context = await browser.newContext({
      httpCredentials: { username: 'operator', password: TOKEN },
      viewport: { width: 1200, height: 1000 },
    });
    const page = await context.newPage();
    const problems: string[] = [];
    page.on('console', (message) => {
      if (message.type() === 'error') problems.push(message.text());
    });
    page.on('pageerror', (error) => problems.push(error.message));
    await page.goto(`${base}/admin`);
    await page.locator('body[data-ready="true"]').waitFor();

    const rows = await page.locator('#clients tbody tr').evaluateAll((trs) =>
      trs.map((tr) => [...tr.querySelectorAll('td')].slice(0, 2).map((td) => td.textContent)),
    );
    expect(rows).toEqual([
      ['ip:203.0.113.7', '3'],
      ['ip:198.51.100.20', '1'],
    ]);
    expect(await page.locator('#global-mints').textContent()).toBe('4');
    expect(await page.locator('#mints-limit').textContent()).toBe('of 50 a day');
    expect(await page.locator('#mints-bar > div').evaluate((bar) => (bar as HTMLElement).style.width)).toBe('8%');

    // uPlot built the chart (its own markup, its legend with our series) on a canvas
    expect(await page.locator('#chart .uplot canvas').count()).toBe(1);
    expect(await page.locator('#chart .u-legend').textContent()).toContain('mints');

    // The screenshot check: the chart's pixels hold the mints bars' colour, and the page is not blank.
    const shot = await page.locator('#chart canvas').screenshot();
    mkdirSync(SCREENSHOT_DIR, { recursive: true });
    writeFileSync(new URL('admin-chart.png', SCREENSHOT_DIR), shot);
    writeFileSync(new URL('admin-page.png', SCREENSHOT_DIR), await page.screenshot({ fullPage: true }));
    const bars = await pixelsNear(browser, shot, [47, 125, 225]);
    expect(bars.near).toBeGreaterThan(50);
    expect(bars.near).toBeLessThan(bars.total / 2);

    // No CSP violation, no script error: the page runs on files only.
    expect(problems).toEqual([]);
    await context.close();
  });
});
