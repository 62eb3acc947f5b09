/**
 * Searches captured output for any `run`-character piece of a secret, after decoding the output
 * every way an echo could have encoded it: as is, backslash escapes (JSON, \u), %-escapes, HTML
 * entities, line breaks removed, base64/base64url at every alignment, hex at both nibble offsets,
 * and each of those applied to the result of another (so a %-escape inside a JSON string counts).
 */

type Decoder = [name: string, decode: (text: string) => string];

const latin1 = (bytes: number[]) => Buffer.from(bytes).toString('latin1');

function unescapeBackslashes(text: string): string {
  return text.replace(/\\(u[0-9a-fA-F]{4}|x[0-9a-fA-F]{2}|[\\"'/nrtbf])/g, (_match, code: string) => {
    if (code.startsWith('u') || code.startsWith('x')) return String.fromCharCode(parseInt(code.slice(1), 16));
    return ({ n: '\n', r: '\r', t: '\t', b: '\b', f: '\f' } as Record<string, string>)[code] ?? code;
  });
}

function percentDecode(text: string): string {
  return text.replace(/(?:%[0-9a-fA-F]{2})+/g, (run) => latin1(run.slice(1).split('%').map((hex) => parseInt(hex, 16))));
}

const NAMED_ENTITIES: Record<string, string> = { amp: '&', lt: '<', gt: '>', quot: '"', apos: "'", sol: '/', equals: '=', plus: '+' };

function htmlDecode(text: string): string {
  return text.replace(/&(#x[0-9a-fA-F]+|#[0-9]+|[a-zA-Z]+);/g, (match, entity: string) => {
    if (entity.startsWith('#x')) return String.fromCodePoint(parseInt(entity.slice(2), 16));
    if (entity.startsWith('#')) return String.fromCodePoint(parseInt(entity.slice(1), 10));
    return NAMED_ENTITIES[entity.toLowerCase()] ?? match;
  });
}

function withoutBreaks(text: string): string {
  return text.replace(/\\[nr]|[\r\n\t ]/g, '');
}

function base64Runs(text: string): string {
  const out: string[] = [];
  for (const [run] of text.matchAll(/[A-Za-z0-9+/_-]{16,}/g)) {
    for (let offset = 0; offset < 4; offset++) {
      const piece = run.slice(offset);
      out.push(Buffer.from(piece.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('latin1'));
    }
  }
  return out.join('\n');
}

function hexRuns(text: string): string {
  const out: string[] = [];
  for (const [run] of text.matchAll(/[0-9a-fA-F]{24,}/g)) {
    for (let offset = 0; offset < 2; offset++) {
      const piece = run.slice(offset);
      out.push(Buffer.from(piece.slice(0, piece.length - (piece.length % 2)), 'hex').toString('latin1'));
    }
  }
  return out.join('\n');
}

const DECODERS: Decoder[] = [
  ['backslash escapes', unescapeBackslashes],
  ['%-escapes', percentDecode],
  ['HTML entities', htmlDecode],
  ['line breaks removed', withoutBreaks],
  ['base64', base64Runs],
  ['hex', hexRuns],
];

/** Every decoding of `text` up to `depth` decoders deep, each named by its chain. */
export function decodings(text: string, depth = 2): Map<string, string> {
  const found = new Map<string, string>([['as is', text]]);
  let frontier = [...found];
  for (let level = 0; level < depth; level++) {
    const next: [string, string][] = [];
    for (const [chain, value] of frontier) {
      for (const [name, decode] of DECODERS) {
        const decoded = decode(value);
        if (decoded === value || decoded === '') continue;
        next.push([chain === 'as is' ? name : `${chain}, then ${name}`, decoded]);
      }
    }
    for (const [chain, value] of next) found.set(chain, value);
    frontier = next;
  }
  return found;
}

/**
 * Which `run`-character pieces of `secret` (case-insensitive) appear in `text` under which
 * decoding: an empty list means none does.
 */
export function secretRuns(text: string, secret: string, run = 12): string[] {
  const pieces = new Set<string>();
  const lower = secret.toLowerCase();
  for (let i = 0; i + run <= lower.length; i++) pieces.add(lower.slice(i, i + run));
  const hits: string[] = [];
  for (const [chain, value] of decodings(text)) {
    const haystack = value.toLowerCase();
    for (const piece of pieces) {
      const at = haystack.indexOf(piece);
      if (at >= 0) {
        hits.push(`${chain}: …${value.slice(Math.max(0, at - 40), at + run + 40)}…`);
        break;
      }
    }
  }
  return hits;
}
