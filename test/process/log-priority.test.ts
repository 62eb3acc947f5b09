import { Pool } from 'undici';
import { describe, expect, it } from 'vitest';
import { SITE_ORIGIN } from '../support/app.js';
import { startServer, useProcessFixtures } from '../support/server-process.js';
import { waitUntil } from '../support/wait.js';

// Issue 16 ("log blinding"): every refused request wrote a refusal line and an access line, so a
// flood filled the bounded stdout buffer and real mints' audit lines were dropped with the rest.
const CONNECTIONS = 16;
// Each refusal wrote about 1 KB (a refusal line with 200 characters of Origin, an access line with
// 200 of URL): this many fill the 4 MiB buffer with room to spare, whatever the machine's speed.
const REFUSALS_BEFORE_MINTS = 6_000;
const MINTS = 20;
const MINT_EVERY_MS = 250;
const ORIGIN = `https://${'a'.repeat(240)}.example`;
const PATH = `/v1/realtime/token?${'q'.repeat(200)}`;

const p = useProcessFixtures({ keepRequests: false });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('a flood of refused requests against a slowly read stdout', () => {
  it(`keeps the audit line of every real mint (${MINTS} mints after ${REFUSALS_BEFORE_MINTS} refusals, among ${CONNECTIONS} connections of them)`, async () => {
    const proc = await startServer(
      {
        ...p.env(),
        RATE_LIMIT_PER_MINUTE: '1000',
        MINTS_PER_CLIENT_PER_DAY: '0',
        LOG_LEVEL: 'info',
      },
      undefined,
      { slowStdout: { bytesPerTick: 4_096, intervalMs: 100, keepLines: true } },
    );
    p.server = proc;
    const flood = new Pool(proc.url, { connections: CONNECTIONS });
    let minting = true;
    let refused = 0;
    const attacker = async () => {
      while (minting) {
        // A foreign Origin: refused (403) before any upstream work.
        const response = await flood.request({
          method: 'POST',
          path: PATH,
          headers: { origin: ORIGIN, 'content-type': 'application/json' },
          body: '{}',
        });
        await response.body.dump();
        if (response.statusCode === 403) refused += 1;
      }
    };
    const mintIds: string[] = [];
    const minter = async () => {
      await waitUntil(() => refused >= REFUSALS_BEFORE_MINTS, 'the flood to fill the log buffer', 80_000);
      for (let i = 0; i < MINTS; i++) {
        const response = await fetch(`${proc.url}/v1/realtime/token`, { method: 'POST', headers: { origin: SITE_ORIGIN } });
        expect(response.status).toBe(200);
        mintIds.push(response.headers.get('x-request-id') as string);
        await sleep(MINT_EVERY_MS);
      }
      minting = false;
    };
    await Promise.all([...Array.from({ length: CONNECTIONS }, attacker), minter()]);
    await flood.close();

    proc.readStdoutFully();
    const metrics = await (await fetch(`${proc.url}/metrics`)).text();
    const audited = () => mintIds.filter((id) => proc.lines.some((line) => line.includes(id) && line.includes('"audit":"client_secret_minted"')));
    await waitUntil(() => audited().length === MINTS, 'every mint’s audit line', 20_000).catch(() => undefined);
    console.info(
      `log priority: ${refused} refusals, ${audited().length}/${MINTS} mints audited, ` +
        `${proc.stdoutStats.lines} lines read, ${/^log_lines_dropped_total (\d+)$/m.exec(metrics)?.[1]} dropped`,
    );
    expect(refused).toBeGreaterThan(REFUSALS_BEFORE_MINTS);
    expect(audited()).toEqual(mintIds);
  }, 150_000);
});
