import { Pool } from 'undici';
import { describe, expect, it } from 'vitest';
import { startServer, useProcessFixtures } from '../support/server-process.js';

// Issue 16: pino's synchronous flush at exit waited forever on a stdout pipe nobody read, so
// SIGTERM never ended the process (not even close-with-grace's own timeout could).
const SHUTDOWN_TIMEOUT_MS = 1_500;
// Time for the exit itself once the budget is spent: a loaded machine, not a blocked flush.
const EXIT_MARGIN_MS = 3_000;
// Each answered request writes an access line of a few hundred bytes: together far more than a
// 64 KiB pipe holds (refusals would not do: past 20 a second they are counted, not logged).
const REQUESTS = 4_000;

const p = useProcessFixtures({ keepRequests: false });

describe('SIGTERM while nobody reads stdout', () => {
  it(`exits within SHUTDOWN_TIMEOUT_MS (${SHUTDOWN_TIMEOUT_MS} ms) + ${EXIT_MARGIN_MS} ms with its stdout pipe full`, async () => {
    const proc = await startServer(
      {
        ...p.env(),
        SHUTDOWN_TIMEOUT_MS: String(SHUTDOWN_TIMEOUT_MS),
      },
      undefined,
      { unreadStdout: true },
    );
    p.server = proc;
    const pool = new Pool(proc.url, { connections: 8 });
    let sent = 0;
    const sender = async () => {
      while (sent < REQUESTS) {
        sent += 1;
        const response = await pool.request({ method: 'GET', path: '/' });
        await response.body.dump();
      }
    };
    await Promise.all(Array.from({ length: 8 }, sender));
    await pool.close();

    const signalled = performance.now();
    proc.child.kill('SIGTERM');
    const outcome = await Promise.race([
      proc.exited,
      new Promise<'still running'>((resolve) => setTimeout(() => resolve('still running'), SHUTDOWN_TIMEOUT_MS + EXIT_MARGIN_MS).unref()),
    ]);
    const elapsedMs = Math.round(performance.now() - signalled);
    console.info(`SIGTERM with a full stdout pipe: ${JSON.stringify(outcome)} after ${elapsedMs} ms`);
    expect(outcome).not.toBe('still running');
    // The service itself shut down cleanly; only its last log lines could not be written.
    expect(outcome).toEqual({ code: 0, signal: null });
  }, 60_000);
});
