import { spawnSync } from 'node:child_process';

export function hasCommand(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

/**
 * The one check for a program a test file needs (redis-server, chromium, promtool): missing, the
 * file fails at once saying how to install it, rather than skipping silently.
 */
export function requireCommand(name: string, install: string): void {
  if (!hasCommand(name)) throw new Error(`${name} is not installed: ${install} (.ci/run installs it; npm run test:unit runs without it)`);
}
