// Imported first by every entry (src/server.ts; `npm run demo` through `tsx --import`), and with
// nothing else imported here: on an older Node the process stops with one line saying what to do,
// before undici (which needs Node 24) loads and fails with an unreadable TypeError.

/** The major of package.json's `engines.node` and .nvmrc (a test keeps the three equal). */
export const REQUIRED_NODE_MAJOR = 24;

/** The one line to print when `version` (process.versions.node) is too old, else undefined. */
export function nodeTooOld(version: string): string | undefined {
  const major = Number.parseInt(version, 10);
  if (Number.isInteger(major) && major >= REQUIRED_NODE_MAJOR) return undefined;
  return (
    `This service needs Node ${REQUIRED_NODE_MAJOR} or newer, and this is Node ${version}. ` +
    `Get Node ${REQUIRED_NODE_MAJOR}: \`nvm install\` (reads .nvmrc) then \`nvm use\`, or https://nodejs.org/en/download; then run it again.`
  );
}

const problem = nodeTooOld(process.versions.node);
if (problem) {
  process.stderr.write(`${problem}\n`);
  process.exit(1);
}
