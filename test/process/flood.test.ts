import { readFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { Client, Pool } from 'undici';
import { describe, expect, it } from 'vitest';
import { startServer, useProcessFixtures } from '../support/server-process.js';

// Issue 9: 20 connections of refused requests with a large Origin exhausted the heap, because every
// refusal logged the raw Origin and the async log destination buffered without bound.
const CONNECTIONS = 20;
const FLOOD_MS = 15_000;
const HEAP_MB = 128;
// Under the 8 KiB header cap with the other headers, so the request reaches the Origin check.
const BIG_ORIGIN = `https://${'a'.repeat(7_000)}.example`;
// Generous: the old heap alone was capped at 128 MB, and the bounded log buffer is 4 MiB.
const RSS_BOUND_MB = 300;

const p = useProcessFixtures({ keepRequests: false });

/** Peak resident set size of a live process, in MB (VmHWM, Linux). */
async function peakRssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmHWM:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kb === undefined) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(kb) / 1024;
}

async function droppedLogLines(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const value = /^log_lines_dropped_total (\d+)$/m.exec(text)?.[1];
  if (value === undefined) throw new Error('no log_lines_dropped_total in /metrics');
  return Number(value);
}

/** One request as raw bytes; resolves with everything the server sent before it closed. */
function rawExchange(url: string, request: string): Promise<string> {
  const { port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = connect(Number(port), '127.0.0.1');
    let answer = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (answer += chunk));
    socket.once('error', reject);
    socket.once('close', () => resolve(answer));
    socket.write(request);
  });
}

describe('a flood of refused requests against a slow stdout', () => {
  it(`keeps the process up, /healthz answering, memory bounded and log lines cut (${CONNECTIONS} connections, ${FLOOD_MS / 1000} s, --max-old-space-size=${HEAP_MB})`, async () => {
    const proc = await startServer(
      { ...p.env(), LOG_LEVEL: 'info' },
      undefined,
      { nodeArgs: [`--max-old-space-size=${HEAP_MB}`], slowStdout: { bytesPerTick: 4_096, intervalMs: 100 } },
    );
    p.server = proc;
    const pid = proc.child.pid as number;
    const flood = new Pool(proc.url, { connections: CONNECTIONS, pipelining: 1 });
    const probe = new Client(proc.url);
    const statuses = new Map<number, number>();
    let refusals = 0;
    let failures = 0;
    const until = performance.now() + FLOOD_MS;

    const attacker = async () => {
      while (performance.now() < until) {
        try {
          const response = await flood.request({
            method: 'POST',
            path: '/v1/realtime/token',
            headers: { origin: BIG_ORIGIN, 'content-type': 'application/json' },
            body: '{}',
          });
          await response.body.dump();
          statuses.set(response.statusCode, (statuses.get(response.statusCode) ?? 0) + 1);
          refusals += 1;
        } catch {
          failures += 1;
        }
      }
    };
    const probes: number[] = [];
    const prober = async () => {
      while (performance.now() < until) {
        const response = await probe.request({ method: 'GET', path: '/healthz' });
        await response.body.dump();
        probes.push(response.statusCode);
        await new Promise((resolve) => setTimeout(resolve, 250));
      }
    };
    await Promise.all([...Array.from({ length: CONNECTIONS }, attacker), prober()]);

    const dropped = await droppedLogLines(proc.url);
    const rssMb = await peakRssMb(pid);
    await flood.close();
    await probe.close();
    // The figures the issue asks for, in the test output.
    console.info(
      `flood: ${refusals} refusals (${failures} failed), statuses ${JSON.stringify(Object.fromEntries(statuses))}, ` +
        `${probes.length} /healthz probes, peak RSS ${rssMb.toFixed(1)} MB, ${dropped} log lines dropped, ` +
        `${proc.stdoutStats.lines} lines read (longest ${proc.stdoutStats.longestLine} chars)`,
    );

    expect(proc.child.exitCode).toBeNull();
    expect(failures).toBe(0);
    expect([...statuses.keys()]).toEqual([403]);
    expect(refusals).toBeGreaterThan(CONNECTIONS);
    expect(probes.length).toBeGreaterThan(10);
    expect(probes.every((status) => status === 200)).toBe(true);
    // Refusals past 20 a second are counted, not logged (issue 16): the log grows by a few dozen
    // lines a second however fast the flood comes, so a slow stdout keeps up and drops nothing.
    // (Dropping past the bound is unit-tested in test/log-destination.test.ts.)
    expect(proc.stdoutStats.lines).toBeLessThan((FLOOD_MS / 1000 + 5) * 50);
    expect(dropped).toBe(0);
    expect(rssMb).toBeLessThan(RSS_BOUND_MB);
    expect(proc.stdoutStats.lines).toBeGreaterThan(0);
    // A refusal line carries at most 200 characters of the Origin, never the 7 KB.
    expect(proc.stdoutStats.longestLine).toBeLessThan(1_500);
    expect((await fetch(`${proc.url}/healthz`)).status).toBe(200);
  }, 60_000);

  it('answers a 15 KB Origin with 431 in the envelope, with a request id', async () => {
    const server = (p.server = await startServer(p.env()));
    const answer = await rawExchange(
      server.url,
      `POST /v1/realtime/token HTTP/1.1\r\nHost: localhost\r\nOrigin: https://${'b'.repeat(15_000)}.example\r\nContent-Length: 0\r\n\r\n`,
    );
    const [head = '', body = ''] = answer.split('\r\n\r\n');
    expect(head).toMatch(/^HTTP\/1\.1 431 /);
    const requestId = /^x-request-id: (\S+)$/im.exec(head)?.[1];
    expect(requestId).toBeDefined();
    expect(JSON.parse(body)).toEqual({
      error: { code: 431, message: 'The request headers are larger than 8 KiB.', request_id: requestId },
    });
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200);
  });
});
