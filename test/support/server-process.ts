import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach } from 'vitest';
import { SITE_ORIGIN } from './app.js';
import { FakeOpenAI, FAKE_API_KEY } from './fake-openai.js';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export interface ServerProcess {
  child: ChildProcess;
  url: string;
  /** Every stdout line so far (pino JSON); with slowStdout, only the lines up to "listening". */
  lines: string[];
  /** What has been read of stdout: line count and the longest line, in characters. */
  stdoutStats: { lines: number; longestLine: number };
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** The one kill-the-server step of every afterEach: SIGKILL unless it already exited, then wait. */
  stop(): Promise<void>;
  /** With slowStdout or unreadStdout: from now on read stdout as fast as it comes (and keep its lines). */
  readStdoutFully: () => void;
}

/**
 * What every process suite sets up: a fresh fake OpenAI before each test and, after it, the server
 * the test started (assign it to `.server`) stopped and the fake closed. `env()` boots against the fake.
 */
export function useProcessFixtures(fakeOptions?: Parameters<typeof FakeOpenAI.start>[0]) {
  const fixtures = {
    fake: undefined as unknown as FakeOpenAI,
    server: undefined as ServerProcess | undefined,
    env: () => ({ OPENAI_API_KEY: FAKE_API_KEY, OPENAI_BASE_URL: fixtures.fake.baseUrl, ALLOWED_ORIGINS: SITE_ORIGIN }),
  };
  beforeEach(async () => {
    fixtures.fake = await FakeOpenAI.start(fakeOptions);
  });
  afterEach(async () => {
    await fixtures.server?.stop();
    fixtures.server = undefined;
    await fixtures.fake.close();
  });
  return fixtures;
}

export function builtServerPath(root = REPO_ROOT): string {
  const entry = `${root}/dist/server.js`;
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run \`npm run build\` first (npm test does)`);
  return entry;
}

export interface StartOptions {
  /** Node flags before the script, e.g. `--max-old-space-size=128`. */
  nodeArgs?: string[];
  /**
   * Once the server listens, read its stdout slowly (bytesPerTick every intervalMs) and keep no
   * lines, as a slow log shipper would: the pipe fills and the server's log destination must cope.
   */
  slowStdout?: { bytesPerTick: number; intervalMs: number; keepLines?: boolean };
  /** Once the server listens, never read its stdout again: the pipe fills and stays full. */
  unreadStdout?: boolean;
}

/** Runs `node dist/server.js` as the container would, on a free port; resolves once it listens. */
export async function startServer(
  env: Record<string, string | undefined>,
  root = REPO_ROOT,
  options: StartOptions = {},
): Promise<ServerProcess> {
  const child = spawn(process.execPath, [...(options.nodeArgs ?? []), builtServerPath(root)], {
    cwd: root,
    env: { PATH: process.env.PATH, HOST: '127.0.0.1', PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const stdoutStats = { lines: 0, longestLine: 0 };
  let keepLines = true;
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  let listening: (url: string) => void = () => undefined;
  const url = new Promise<string>((resolve, reject) => {
    listening = resolve;
    void exited.then(({ code }) => reject(new Error(`server exited (${code}) before listening: ${stderr}`)));
  });
  let partial = '';
  const onText = (text: string) => {
    const parts = (partial + text).split('\n');
    partial = parts.pop() ?? '';
    for (const line of parts) {
      stdoutStats.lines += 1;
      stdoutStats.longestLine = Math.max(stdoutStats.longestLine, line.length);
      if (!keepLines) continue;
      lines.push(line);
      // HOST=127.0.0.1 (the tests' default) or :: (the service's and the image's default).
      const match = /Server listening at http:\/\/(?:127\.0\.0\.1|\[::\]):(\d+)/.exec(line);
      if (match?.[1]) listening(`http://127.0.0.1:${match[1]}`);
    }
  };
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', onText);
  const listeningUrl = await url;
  let timer: NodeJS.Timeout | undefined;
  if (options.slowStdout || options.unreadStdout) {
    child.stdout.off('data', onText);
    child.stdout.pause();
  }
  if (options.slowStdout) {
    const { bytesPerTick, intervalMs } = options.slowStdout;
    keepLines = options.slowStdout.keepLines ?? false;
    timer = setInterval(() => {
      const chunk = (child.stdout.read(bytesPerTick) ?? child.stdout.read()) as string | null;
      if (chunk !== null) onText(chunk);
    }, intervalMs);
    void exited.then(() => clearInterval(timer));
  }
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  };
  const readStdoutFully = () => {
    clearInterval(timer);
    keepLines = true;
    child.stdout.off('data', onText);
    child.stdout.on('data', onText);
    child.stdout.resume();
  };
  return { child, url: listeningUrl, lines, stdoutStats, stderr: () => stderr, exited, stop, readStdoutFully };
}

/** Runs the server expecting it to refuse to start; resolves with its exit code and output. */
export async function runServerToExit(env: Record<string, string | undefined>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, [builtServerPath()], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('close', (exitCode) => resolve(exitCode)));
  return { code, stdout, stderr };
}
