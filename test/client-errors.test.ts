import { once } from 'node:events';
import { connect } from 'node:net';
import { describe, expect, it } from 'vitest';
import { SITE_ORIGIN, useFakeOpenAI } from './support/app.js';

const openai = useFakeOpenAI();

/** Sends raw bytes and returns everything the server wrote before closing. */
async function raw(url: string, request: string): Promise<{ status: number; headers: Record<string, string>; body: string }> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await once(socket, 'connect');
  socket.write(request);
  let text = '';
  socket.on('data', (chunk: Buffer) => (text += chunk.toString('latin1')));
  await once(socket, 'close');
  const [head = '', body = ''] = text.split('\r\n\r\n', 2);
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers = Object.fromEntries(lines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]));
  return { status: Number(statusLine.split(' ')[1]), headers, body };
}

function expectRawEnvelope(answer: { status: number; headers: Record<string, string>; body: string }, status: number) {
  expect(answer.status).toBe(status);
  const envelope = JSON.parse(answer.body) as { error: { code: number; message: string; request_id: string } };
  expect(envelope.error.code).toBe(status);
  expect(envelope.error.request_id).toBe(answer.headers['x-request-id']);
  expect(envelope.error.request_id).toMatch(/^[0-9a-f-]{36}$/);
  expect(answer.headers['content-type']).toContain('application/json');
  return envelope;
}

describe("requests Node's parser refuses still get the envelope", () => {
  async function listening() {
    const t = await openai.app();
    const url = await t.app.listen({ port: 0, host: '127.0.0.1' });
    return { t, url };
  }

  it('431 for headers over 8 KiB (a 9 KB Origin), before any work and without logging the header', async () => {
    const { t, url } = await listening();
    const origin = `https://${'a'.repeat(9000)}.example`;
    const answer = await raw(url, `POST /v1/realtime/token HTTP/1.1\r\nHost: x\r\nOrigin: ${origin}\r\nContent-Length: 0\r\n\r\n`);
    expect(expectRawEnvelope(answer, 431).error.message).toContain('8 KiB');
    expect(t.logs.raw).not.toContain('aaaaaaaaaa');
    expect(openai.fake.mintRequests).toHaveLength(0);
    const metrics = (await t.app.inject({ method: 'GET', url: '/metrics' })).body;
    expect(metrics).toContain('realtime_token_refusals_total{reason="bad_request"} 1');
  });

  it('headers just under the cap are served (a 7 KB Origin is refused by the origin guard, not the parser)', async () => {
    const { t, url } = await listening();
    const origin = `https://${'b'.repeat(7000)}.example`;
    const response = await fetch(`${url}/v1/realtime/token`, { method: 'POST', headers: { origin } });
    expect(response.status).toBe(403);
    const refusal = t.logs.find('request refused').at(-1);
    expect(String(refusal?.origin).length).toBe(200);
  });

  it('400 for a request line that is not HTTP', async () => {
    const { url } = await listening();
    expectRawEnvelope(await raw(url, 'HELLO\r\n\r\n'), 400);
  });

  it('417 for an Expect other than 100-continue', async () => {
    const { url } = await listening();
    const answer = await raw(url, `POST /v1/realtime/token HTTP/1.1\r\nHost: x\r\nOrigin: ${SITE_ORIGIN}\r\nExpect: 200-ok\r\nContent-Length: 0\r\nConnection: close\r\n\r\n`);
    expectRawEnvelope(answer, 417);
  });
});
