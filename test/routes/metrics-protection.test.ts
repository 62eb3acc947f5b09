import { describe, expect, it } from 'vitest';
import { expectEnvelope, useFakeOpenAI, type TestApp } from '../support/app.js';
import { freePort } from '../support/redis-server.js';

const openai = useFakeOpenAI();

const TOKEN = 'metrics-token-0123456789-abcdefghijkl';

/** A real request over a real socket, shaped for expectEnvelope. */
async function get(url: string, headers: Record<string, string> = {}) {
  const response = await fetch(url, { headers });
  return { statusCode: response.status, headers: Object.fromEntries(response.headers), body: await response.text() };
}

async function listen(t: TestApp): Promise<string> {
  return t.app.listen({ port: 0, host: '127.0.0.1' });
}

describe('/metrics protection', () => {
  it('public by default, with a boot warning that says how to close it', async () => {
    const t = await openai.app();
    const base = await listen(t);
    const response = await get(`${base}/metrics`);
    expect(response.statusCode).toBe(200);
    expect(response.body).toMatch(/^realtime_ready 1$/m);
    expect(t.logs.lines.filter((l) => l.level === 'warn' && String(l.msg).startsWith('/metrics is public'))).toHaveLength(1);
    expect(t.logs.find('service configured')[0]).toMatchObject({ metrics: 'public' });
  });

  it('METRICS_TOKEN: a bearer is required (401 envelope with a Bearer challenge), and no warning', async () => {
    const t = await openai.app({ METRICS_TOKEN: TOKEN });
    const base = await listen(t);
    const wrong: Record<string, string>[] = [{}, { authorization: 'Bearer wrong' }, { authorization: `Bearer ${TOKEN}x` }, { authorization: `Basic ${Buffer.from(`x:${TOKEN}`).toString('base64')}` }];
    for (const headers of wrong) {
      const response = await get(`${base}/metrics`, headers);
      expectEnvelope(response, 401);
      expect(response.headers['www-authenticate']).toBe('Bearer realm="metrics"');
      expect(response.body).not.toContain('realtime_');
    }
    const scraped = await get(`${base}/metrics`, { authorization: `Bearer ${TOKEN}` });
    expect(scraped.statusCode).toBe(200);
    expect(scraped.body).toMatch(/^realtime_ready 1$/m);
    // the refusals are counted like any other, under their own reason
    expect(scraped.body).toMatch(/^realtime_token_refusals_total\{reason="operator_auth"\} 4$/m);
    expect(t.logs.lines.some((l) => String(l.msg).startsWith('/metrics is public'))).toBe(false);
    expect(t.logs.find('service configured')[0]).toMatchObject({ metrics: 'token' });
    expect(t.logs.raw).not.toContain(TOKEN);
  });

  it('METRICS_PORT: /metrics only on that listener (404 on PORT), and nothing else there', async () => {
    const metricsPort = await freePort();
    const t = await openai.app({ METRICS_PORT: String(metricsPort) });
    const base = await listen(t);
    await t.app.metricsServer?.listen({ port: metricsPort, host: '127.0.0.1' });
    const metricsBase = `http://127.0.0.1:${metricsPort}`;

    expectEnvelope(await get(`${base}/metrics`), 404);
    const scraped = await get(`${metricsBase}/metrics`);
    expect(scraped.statusCode).toBe(200);
    expect(scraped.body).toMatch(/^realtime_token_mints_total|^# TYPE realtime_token_mints_total counter$/m);
    for (const path of ['/healthz', '/readyz', '/', '/v1/realtime/token', '/admin', '/docs']) {
      expectEnvelope(await get(`${metricsBase}${path}`), 404);
    }
    // the service itself still answers on PORT, and GET / no longer names /metrics there
    expect((await get(`${base}/healthz`)).statusCode).toBe(200);
    expect(JSON.parse((await get(`${base}/`)).body)).not.toHaveProperty('endpoints.metrics');
    expect(t.logs.lines.some((l) => String(l.msg).startsWith('/metrics is public'))).toBe(false);
    expect(t.logs.find('service configured')[0]).toMatchObject({ metrics: 'own_port' });

    await t.app.close();
    // closing the app closes its metrics listener too
    await expect(fetch(`${metricsBase}/metrics`)).rejects.toThrow();
  });

  it('METRICS_PORT and METRICS_TOKEN together: the private port still wants the bearer', async () => {
    const metricsPort = await freePort();
    const t = await openai.app({ METRICS_PORT: String(metricsPort), METRICS_TOKEN: TOKEN });
    await listen(t);
    await t.app.metricsServer?.listen({ port: metricsPort, host: '127.0.0.1' });
    const metricsBase = `http://127.0.0.1:${metricsPort}`;
    expectEnvelope(await get(`${metricsBase}/metrics`), 401);
    expect((await get(`${metricsBase}/metrics`, { authorization: `Bearer ${TOKEN}` })).statusCode).toBe(200);
    expect(t.logs.find('service configured')[0]).toMatchObject({ metrics: 'own_port_token' });
  });

  it('realtime_ready follows /readyz: 0 when OpenAI refuses the key', async () => {
    openai.fake.keys.set(openai.fake.keys.keys().next().value as string, 'revoked');
    const t = await openai.app();
    expect((await t.app.inject({ method: 'GET', url: '/readyz' })).statusCode).toBe(503);
    const text = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(text).toMatch(/^realtime_ready 0$/m);
  });
});
