import { once } from 'node:events';
import { connect } from 'node:net';
import { request } from 'undici';

/** A request exactly as it went on the wire (header names lower-cased). */
export interface RecordedRequest {
  method: string;
  path: string;
  query: Record<string, string>;
  headers: Record<string, string>;
  body?: Buffer;
}

/** A response exactly as it came back (header names lower-cased, repeated ones joined). */
export interface RecordedResponse {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
}

export interface Exchange {
  request: RecordedRequest;
  response: RecordedResponse;
}

export interface OutgoingRequest {
  method: 'GET' | 'POST' | 'DELETE';
  path: string;
  query?: Record<string, string>;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

function lowerCased(headers: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(headers).map(([name, value]) => [name.toLowerCase(), value]));
}

function withQuery(path: string, query: Record<string, string>): string {
  const search = new URLSearchParams(query).toString();
  return search === '' ? path : `${path}?${search}`;
}

/** The request as it will be sent: Host and Content-Length stated, so the record is what the server read. */
function prepare(base: URL, outgoing: OutgoingRequest): RecordedRequest {
  const body = outgoing.body === undefined ? undefined : Buffer.from(outgoing.body);
  const headers = lowerCased({ host: base.host, ...outgoing.headers });
  if (body) headers['content-length'] = String(body.length);
  return { method: outgoing.method, path: outgoing.path, query: outgoing.query ?? {}, headers, body };
}

/** Sends requests to a real listening server and keeps every exchange, for a validator to judge later. */
export class TrafficRecorder {
  readonly exchanges: Exchange[] = [];
  private readonly base: URL;

  constructor(baseUrl: string) {
    this.base = new URL(baseUrl);
  }

  async send(outgoing: OutgoingRequest): Promise<Exchange> {
    const recorded = prepare(this.base, outgoing);
    const { host, ...headers } = recorded.headers;
    void host;
    const answer = await request(new URL(withQuery(recorded.path, recorded.query), this.base), {
      method: recorded.method,
      headers,
      body: recorded.body,
    });
    const response: RecordedResponse = {
      status: answer.statusCode,
      headers: Object.fromEntries(
        Object.entries(answer.headers).map(([name, value]) => [name, Array.isArray(value) ? value.join(', ') : String(value)]),
      ),
      body: Buffer.from(await answer.body.arrayBuffer()),
    };
    const exchange = { request: recorded, response };
    this.exchanges.push(exchange);
    return exchange;
  }

  /**
   * Sends a request whose last header line waits until `between` has run (e.g. the server begins to
   * close): the request is under way on an open connection, as a load balancer's kept-alive one is.
   */
  async sendSplit(outgoing: OutgoingRequest, between: () => Promise<void>): Promise<Exchange> {
    const recorded = prepare(this.base, outgoing);
    const socket = connect(Number(this.base.port), this.base.hostname);
    await once(socket, 'connect');
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    const lines = Object.entries(recorded.headers).map(([name, value]) => `${name}: ${value}\r\n`);
    socket.write(`${recorded.method} ${withQuery(recorded.path, recorded.query)} HTTP/1.1\r\n${lines.slice(0, -1).join('')}`);
    await between();
    socket.end(Buffer.concat([Buffer.from(`${lines.at(-1) ?? ''}\r\n`), recorded.body ?? Buffer.alloc(0)]));
    await once(socket, 'close');
    const exchange = { request: recorded, response: parseRawResponse(Buffer.concat(chunks)) };
    this.exchanges.push(exchange);
    return exchange;
  }
}

/** One HTTP/1.1 response read off a socket that the server closed after it (Connection: close). */
export function parseRawResponse(raw: Buffer): RecordedResponse {
  const end = raw.indexOf('\r\n\r\n');
  if (end < 0) throw new Error(`no complete response head in ${JSON.stringify(raw.toString('latin1').slice(0, 200))}`);
  const [statusLine = '', ...lines] = raw.subarray(0, end).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.1 (\d{3}) /.exec(statusLine)?.[1]);
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = headers[name] === undefined ? value : `${headers[name]}, ${value}`;
  }
  let body = raw.subarray(end + 4);
  if (headers['content-length'] !== undefined) body = body.subarray(0, Number(headers['content-length']));
  return { status, headers, body };
}

/** A multipart/form-data body as a browser's FormData serializes it (each part with its own type). */
export async function multipartBody(parts: Record<string, { value: string; type: string }>): Promise<{ contentType: string; body: Buffer }> {
  const form = new FormData();
  for (const [name, part] of Object.entries(parts)) form.append(name, new Blob([part.value], { type: part.type }), name);
  const encoded = new Request('http://localhost/', { method: 'POST', body: form });
  return { contentType: encoded.headers.get('content-type') ?? '', body: Buffer.from(await encoded.arrayBuffer()) };
}
