import { writeSync } from 'node:fs';
import type { Writable } from 'node:stream';
import type { DestinationStream } from 'pino';

/** What stdout may hold in memory when it is slower than the log lines come; past it lines are dropped. */
export const LOG_BUFFER_BYTES = 4 * 1024 * 1024;
/** Room audit lines have beyond LOG_BUFFER_BYTES: about 40,000 mints' lines while stdout is stuck. */
export const AUDIT_RESERVE_BYTES = 16 * 1024 * 1024;
/** Lines wait at most this long (ms) to be written together... */
export const LOG_FLUSH_MS = 50;
/** ...or until this much has gathered. */
export const LOG_FLUSH_BYTES = 16 * 1024;

/** A log destination that drops lines (and counts them) rather than buffer without bound. */
export interface BoundedDestination extends DestinationStream {
  /** Lines dropped because stdout was full (audit lines included, which only the reserve's end drops). */
  readonly droppedLines: number;
  /** Audit lines among them (only once the audit reserve is full too). */
  readonly droppedAuditLines: number;
  /** Resolves once every line taken so far has been handed to the OS, or after `withinMs`, whichever is first. */
  flush(withinMs: number): Promise<void>;
}

// pino writes each line as one string; an audit line carries this key (a value that merely
// contains the text has its quotes escaped, so it cannot pass for one).
const AUDIT_KEY = '"audit":"';

export function isAuditLine(line: string): boolean {
  return line.includes(AUDIT_KEY);
}

/** What each stdout destination still holds when the process exits: written if the OS takes it at once. */
const atExit = new Set<() => void>();
let exitHookInstalled = false;

function writeAtExit(flushers: Set<() => void>): void {
  for (const flush of flushers) flush();
}

/**
 * The lines of the last turn (a fatal line just before process.exit(), close-with-grace's timeout
 * line) written synchronously at exit, but only what the OS takes without waiting: stdout on a
 * pipe is non-blocking (libuv), so a full pipe answers EAGAIN and the rest is given up.
 */
function writeWithoutWaiting(fd: number, text: string): void {
  let rest = Buffer.from(text);
  while (rest.length > 0) {
    let written: number;
    try {
      written = writeSync(fd, rest);
    } catch {
      return;
    }
    if (written <= 0) return;
    rest = rest.subarray(written);
  }
}

export interface BoundedDestinationOptions {
  /** Where the lines go; default process.stdout (asynchronous on a pipe: never blocks the process). */
  stream?: Writable;
  maxBytes?: number;
  auditReserveBytes?: number;
  /** Default LOG_FLUSH_MS. */
  flushMs?: number;
  /** Default LOG_FLUSH_BYTES. */
  flushBytes?: number;
}

/**
 * Lines gathered into one write on stdout (LOG_FLUSH_MS after the first, or once LOG_FLUSH_BYTES
 * have gathered), bounded: past `maxBytes`
 * waiting, lines are dropped and counted, except audit lines, which have `auditReserveBytes` more
 * (a flood of noise cannot push out the record of what was minted). Nothing here ever writes
 * synchronously: with stdout backed up or gone (EPIPE) the process still exits when it must, its
 * last lines lost rather than its exit blocked (pino's own exit flush waits forever on a full pipe).
 *
 * Why a window, not a write per line (or per turn): a write to a pipe is a system call and wakes its
 * reader; at a few hundred mints a second, each alone in its turn, that was the largest part of
 * what a mint's log line cost. 50 ms is not a delay anyone reading logs sees.
 */
export function boundedStdout(options: BoundedDestinationOptions = {}): BoundedDestination {
  const stream = options.stream ?? process.stdout;
  const maxBytes = options.maxBytes ?? LOG_BUFFER_BYTES;
  const auditLimit = maxBytes + (options.auditReserveBytes ?? AUDIT_RESERVE_BYTES);
  const flushMs = options.flushMs ?? LOG_FLUSH_MS;
  const flushBytes = options.flushBytes ?? LOG_FLUSH_BYTES;
  let batch: string[] = [];
  let batchBytes = 0;
  let timer: NodeJS.Timeout | undefined;
  let broken = false;
  let dropped = 0;
  let droppedAudit = 0;
  // Writes complete in order: the last one's callback means everything before it is written.
  let lastWritten = Promise.resolve();

  // EPIPE (the reader went away) and the like: stop writing, count what is lost, never crash.
  stream.on('error', () => {
    broken = true;
  });

  const writeBatch = () => {
    clearTimeout(timer);
    timer = undefined;
    if (batch.length === 0) return;
    const text = batch.join('');
    batch = [];
    batchBytes = 0;
    if (!broken) lastWritten = new Promise((resolve) => stream.write(text, () => resolve()));
  };

  const pending = () => stream.writableLength + batchBytes;

  if (stream === process.stdout) {
    atExit.add(() => {
      if (broken || batch.length === 0) return;
      const text = batch.join('');
      batch = [];
      batchBytes = 0;
      writeWithoutWaiting(process.stdout.fd, text);
    });
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.once('exit', () => writeAtExit(atExit));
    }
  }

  return {
    write(line: string) {
      const audit = isAuditLine(line);
      if (broken || pending() + line.length > (audit ? auditLimit : maxBytes)) {
        dropped += 1;
        if (audit) droppedAudit += 1;
        return;
      }
      batch.push(line);
      batchBytes += line.length;
      if (batchBytes >= flushBytes) writeBatch();
      else if (timer === undefined) {
        // Unref'd: the exit hook writes what is left.
        timer = setTimeout(writeBatch, flushMs);
        timer.unref();
      }
    },
    get droppedLines() {
      return dropped;
    },
    get droppedAuditLines() {
      return droppedAudit;
    },
    flush(withinMs: number) {
      writeBatch();
      if (broken || stream.writableLength === 0) return Promise.resolve();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, withinMs);
        timer.unref();
      });
      return Promise.race([lastWritten, timeout]).finally(() => clearTimeout(timer));
    },
  };
}
