import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { REPO_ROOT } from './server-process.js';
import { waitUntil } from './wait.js';

export interface DemoProcess {
  child: ChildProcess;
  /** Everything it printed so far, stdout and stderr. */
  output: () => string;
  /** The service's base URL, from the banner. */
  url: string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Kills the whole process group (npm, tsx and node), as closing the terminal would. */
  kill: () => void;
}

/** `npm run demo` exactly as a newcomer types it, in its own process group as a terminal runs it. */
export async function startDemo(env: Record<string, string> = {}): Promise<DemoProcess> {
  const child = spawn('npm', ['run', 'demo'], {
    cwd: REPO_ROOT,
    detached: true,
    env: { PATH: process.env.PATH, HOME: process.env.HOME, PORT: '0', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }));
  await Promise.race([
    waitUntil(() => output.includes('Ctrl-C stops'), 'the demo banner', 60_000),
    exited.then(({ code }) => {
      throw new Error(`the demo exited (${code}) before its banner:\n${output}`);
    }),
  ]);
  const url = /Realtime token service \(demo\) at (http:\/\/\S+)/.exec(output)?.[1];
  if (!url) throw new Error(`no URL in the demo banner:\n${output}`);
  return {
    child,
    output: () => output,
    url,
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null && child.pid) process.kill(-child.pid, 'SIGKILL');
    },
  };
}
