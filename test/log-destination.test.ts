import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { boundedStdout, isAuditLine } from '../src/log-destination.js';

/** A stdout whose reader is stuck until released: every write waits. */
class StuckStdout extends Writable {
  writes: string[] = [];
  private held: (() => void)[] = [];
  constructor() {
    super({ highWaterMark: 1024, decodeStrings: false });
  }
  private waiting: (() => void)[] = [];
  override _write(chunk: string, _encoding: string, callback: () => void): void {
    this.writes.push(String(chunk));
    if (this.stuck) this.held.push(callback);
    else callback();
    for (const wake of this.waiting.splice(0)) wake();
  }
  /** Resolves at the next write that reaches this stream. */
  nextWrite(): Promise<void> {
    return new Promise((resolve) => this.waiting.push(resolve));
  }
  private stuck = true;
  /** The reader catches up: what is held is taken, and so is everything after it. */
  release(): void {
    this.stuck = false;
    for (const callback of this.held.splice(0)) callback();
  }
}

const nextTurn = () => new Promise((resolve) => setImmediate(resolve));
// Each line written as it comes: these tests are about the bounds, not the gathering.
const FLUSH_NOW = { flushBytes: 1 };
const line = (fields: Record<string, unknown>) => `${JSON.stringify({ level: 'info', ...fields })}\n`;

describe('boundedStdout', () => {
  it('gathers lines into one write, written flushMs after the first', async () => {
    const stdout = new StuckStdout();
    const destination = boundedStdout({ stream: stdout, maxBytes: 10_000, flushMs: 40 });
    const started = performance.now();
    const written = stdout.nextWrite();
    for (let i = 0; i < 50; i++) destination.write(line({ i }));
    await nextTurn();
    expect(stdout.writes).toHaveLength(0);
    await written;
    expect(performance.now() - started).toBeGreaterThanOrEqual(35);
    expect(stdout.writes).toHaveLength(1);
    expect(stdout.writes[0]?.split('\n')).toHaveLength(51);
  });

  it('writes at once when flushBytes have gathered, without waiting for the window', () => {
    const stdout = new StuckStdout();
    const destination = boundedStdout({ stream: stdout, maxBytes: 10_000, flushMs: 60_000, flushBytes: 100 });
    destination.write(line({ pad: 'a'.repeat(40) }));
    expect(stdout.writes).toHaveLength(0);
    destination.write(line({ pad: 'b'.repeat(40) }));
    expect(stdout.writes).toHaveLength(1);
    expect(stdout.writes[0]).toContain('a'.repeat(40));
    expect(stdout.writes[0]).toContain('b'.repeat(40));
  });

  it('past maxBytes drops ordinary lines and counts them, but keeps audit lines (up to the reserve)', async () => {
    const stdout = new StuckStdout();
    const destination = boundedStdout({ stream: stdout, maxBytes: 2_000, auditReserveBytes: 1_000, ...FLUSH_NOW });
    const noise = line({ msg: 'request refused', pad: 'x'.repeat(150) });
    for (let i = 0; i < 40; i++) destination.write(noise);
    await nextTurn();
    expect(destination.droppedLines).toBeGreaterThan(25);
    const before = destination.droppedLines;
    const audit = line({ audit: 'client_secret_minted', request_id: 'r1' });
    destination.write(audit);
    destination.write(noise);
    expect(destination.droppedLines).toBe(before + 1);
    expect(destination.droppedAuditLines).toBe(0);
    // The reserve is bounded too: enough audit lines fill it, and then those are counted as well.
    for (let i = 0; i < 30; i++) destination.write(audit);
    expect(destination.droppedAuditLines).toBeGreaterThan(0);
    await nextTurn();
    stdout.release();
    await destination.flush(5_000);
    expect(stdout.writes.join('')).toContain('"request_id":"r1"');
  });

  it('takes lines again once stdout drains, and flush() waits for that (bounded)', async () => {
    const stdout = new StuckStdout();
    const destination = boundedStdout({ stream: stdout, maxBytes: 1_000, ...FLUSH_NOW });
    destination.write(line({ pad: 'y'.repeat(900) }));
    await nextTurn();
    const started = performance.now();
    await destination.flush(50);
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);
    const flushed = destination.flush(5_000);
    stdout.release();
    await flushed;
    destination.write(line({ after: true }));
    await nextTurn();
    expect(stdout.writes.at(-1)).toContain('"after":true');
    expect(destination.droppedLines).toBe(0);
  });

  it('a broken stdout (EPIPE) is not a crash: lines are dropped and counted', async () => {
    const stdout = new StuckStdout();
    const destination = boundedStdout({ stream: stdout });
    stdout.emit('error', Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    destination.write(line({ lost: true }));
    expect(destination.droppedLines).toBe(1);
    await destination.flush(1_000);
  });

  it('knows an audit line by its key, not by a value that quotes it', () => {
    expect(isAuditLine(line({ audit: 'call_started' }))).toBe(true);
    expect(isAuditLine(line({ origin: '"audit":"x"' }))).toBe(false);
  });
});
