import { spawnSync } from 'node:child_process';

const warned = new Set<string>();

/**
 * Whether a binary the tests need (a name on PATH, or a path) is installed. Missing: an error
 * under CI=true (.ci/run installs it), else one warning naming what is skipped. Use the answer in
 * `describe.skipIf(!available)`.
 */
export function requireCommand(command: string, skipped: string): boolean {
  // `command -v` finds names on PATH and accepts executable paths as they are.
  const found = spawnSync('sh', ['-c', 'command -v "$0"', command], { stdio: 'ignore' }).status === 0;
  if (found) return true;
  if (process.env.CI === 'true') throw new Error(`${command} is required under CI=true (.ci/run installs it)`);
  const key = `${command}\n${skipped}`;
  if (!warned.has(key)) {
    warned.add(key);
    console.warn(`${command} is not installed: skipping ${skipped}`);
  }
  return false;
}
