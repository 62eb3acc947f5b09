import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { describe, expect, it } from 'vitest';
import { expectEnvelope, useFakeOpenAI } from '../support/app.js';

const openai = useFakeOpenAI();

interface RawAnswer {
  statusCode: number;
  headers: Record<string, string>;
  body: string;
}

/** One request as raw bytes over a real socket: what Node and Fastify answer before any route runs. */
function exchange(port: number, request: string): Promise<RawAnswer> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    let text = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      text += chunk;
      const [head = '', body = ''] = text.split('\r\n\r\n');
      const length = Number(/^content-length: *(\d+)$/im.exec(head)?.[1] ?? NaN);
      if (Buffer.byteLength(body) >= length) socket.end();
    });
    socket.once('error', reject);
    socket.once('close', () => {
      const [head = '', ...rest] = text.split('\r\n\r\n');
      const [statusLine = '', ...headerLines] = head.split('\r\n');
      const headers = Object.fromEntries(
        headerLines.map((line) => [line.slice(0, line.indexOf(':')).toLowerCase(), line.slice(line.indexOf(':') + 1).trim()]),
      );
      resolve({ statusCode: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n') });
    });
    socket.write(request);
  });
}

async function listening() {
  const t = await openai.app();
  await t.app.listen({ port: 0, host: '127.0.0.1' });
  return { t, port: (t.app.server.address() as AddressInfo).port };
}

function expectSecured(answer: RawAnswer, status: number) {
  const envelope = expectEnvelope(answer, status);
  // The security headers of every other answer (helmet's), and no caching of an error.
  expect(answer.headers['x-content-type-options']).toBe('nosniff');
  expect(answer.headers['content-security-policy']).toBeDefined();
  expect(answer.headers['cache-control']).toBe('no-store');
  expect(answer.headers['content-type']).toMatch(/^application\/json/);
  return envelope;
}

// Issue 16: these left in Fastify's own JSON (echoing the path) or Node's bare 400, without
// X-Request-ID or security headers.
describe('errors raised by the framework, before any route, leave in the one envelope', () => {
  it('a path with a malformed %-escape: 400, without echoing the path', async () => {
    const { t, port } = await listening();
    const answer = await exchange(port, 'GET /v1/realtime/%zz<script> HTTP/1.1\r\nHost: localhost\r\n\r\n');
    const envelope = expectSecured(answer, 400);
    expect(answer.body).not.toContain('%zz');
    expect(answer.body).not.toContain('<script>');
    expect(t.logs.find('request refused').at(-1)).toMatchObject({ refusal: 'bad_request', status: 400, request_id: envelope.error.request_id });
  });

  it('a call id longer than any call id (the router’s parameter limit): 414', async () => {
    const { port } = await listening();
    const id = 'x'.repeat(300);
    const answer = await exchange(port, `DELETE /v1/realtime/calls/${id} HTTP/1.1\r\nHost: localhost\r\n\r\n`);
    expectSecured(answer, 414);
    expect(answer.body).not.toContain(id);
  });

  it('an HTTP/1.1 request without a Host header: 400 (RFC 9112 asks for it)', async () => {
    const { port } = await listening();
    const answer = await exchange(port, 'GET /healthz HTTP/1.1\r\n\r\n');
    const envelope = expectSecured(answer, 400);
    expect(envelope.error.message).toMatch(/Host/);
  });

  it('an HTTP/1.0 request without a Host header is served (HTTP/1.0 has none)', async () => {
    const { port } = await listening();
    const answer = await exchange(port, 'GET /healthz HTTP/1.0\r\n\r\n');
    expect(answer.statusCode).toBe(200);
  });
});
