// Anything shaped like an OpenAI key or secret (sk-..., sk-proj-..., ek_..., rk-...), in any case,
// wherever it starts: after a non-alphanumeric character or a %XX escape (`Bearer%20sk-...`,
// `tail_sk-...`), not inside a word (`risk-free`). OpenAI's error text quotes keys in part
// ("Incorrect API key provided: sk-abc***xyz").
const TOKEN_LIKE = '(?<=^|[^a-z0-9]|%[0-9a-f]{2})(?:sk|ek|rk)[-_][a-z0-9_*.-]{4,}';

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The forms a key takes when something echoes it back: as is, URL-encoded (partly or wholly), base64. */
function keyForms(key: string): string[] {
  const bytes = Buffer.from(key, 'utf8');
  const forms = new Set([
    key,
    // The key past its sk-/sk-proj- prefix: catches echoes whose first characters are escaped
    // (%73k-..., \u0073k-..., &#115;k-...).
    key.replace(/^(?:sk|ek|rk)[-_](?:[a-z]+[-_])?/i, ''),
    encodeURIComponent(key),
    [...bytes].map((byte) => `%${byte.toString(16).padStart(2, '0')}`).join(''),
    bytes.toString('base64').replace(/=+$/, ''),
    bytes.toString('base64url'),
  ]);
  return [...forms].filter((form) => form.length >= 8).sort((a, b) => b.length - a.length);
}

/**
 * A function that removes the given keys (every form above, any case) and anything key- or
 * secret-shaped from a text. Used on every log line before it is written, and on OpenAI's error
 * text before it is kept.
 */
export function secretScrubber(...keys: (string | undefined)[]): (text: string) => string {
  const forms = keys.flatMap((key) => (key ? keyForms(key) : [])).sort((a, b) => b.length - a.length);
  const parts = [...forms.map(escapeRegExp), TOKEN_LIKE];
  const pattern = new RegExp(parts.join('|'), 'gi');
  return (text) => text.replace(pattern, '[redacted]');
}

const scrubTokens = secretScrubber();

/** Removes anything key- or secret-shaped from text before it is logged; caps its length. */
export function scrubSecrets(text: string, maxLength = 500): string {
  return scrubTokens(text).slice(0, maxLength);
}

// What may stay of a text nobody controls (OpenAI's error message, a proxy's page): plain words.
// A word is letters in one of the shapes language and identifiers take (capitalized or lower,
// an acronym, snake/kebab/dotted lower case), or a short number, at most 24 characters a part.
// Anything else, whatever its encoding (base64, hex, %-escapes, entities, \u escapes, a key cut
// in two by a line break), is not a word: it becomes PLACEHOLDER. So no long token-shaped run of
// a secret survives, without knowing the secret or its encoding.
const WORD = new RegExp(
  '^(?:' +
    [
      "[A-Za-z][a-z]{0,23}(?:'[a-z]{1,3})?",
      '[A-Z]{1,6}',
      '[A-Z][a-z]{1,10}[A-Z]{1,3}',
      '[0-9]{1,6}',
      '[a-z]{1,24}(?:[_.-][a-z]{1,24}){1,5}',
    ].join('|') +
    ')$',
);
const LEADING_PUNCTUATION = /^[("'[{<]+/;
const TRAILING_PUNCTUATION = /[)"'\]}>.,:;!?]+$/;
export const PLACEHOLDER = '[cut]';
/** Past this much of an answer no one reads on; the reduction is linear in it. */
const MAX_SCANNED_CHARS = 16 * 1024;

/** Whether a whitespace-separated token, its punctuation aside, is a plain word. */
function isWord(token: string): boolean {
  const core = token.replace(LEADING_PUNCTUATION, '').replace(TRAILING_PUNCTUATION, '');
  return core === '' ? token.length <= 3 : WORD.test(core);
}

/**
 * Free text reduced to its plain words, every other token replaced by PLACEHOLDER (runs of them
 * merged), at most `maxChars` long, cut at a word.
 */
export function plainWords(text: string, maxChars = 200): string {
  const out: string[] = [];
  let length = 0;
  for (const token of text.slice(0, MAX_SCANNED_CHARS).split(/\s+/)) {
    if (token === '') continue;
    const kept = isWord(token) ? token : PLACEHOLDER;
    if (kept === PLACEHOLDER && out.at(-1) === PLACEHOLDER) continue;
    if (length + kept.length + 1 > maxChars) break;
    out.push(kept);
    length += kept.length + 1;
  }
  return out.join(' ');
}

// Lower-case segments of letters (or a short number), joined by _ or . : OpenAI's error codes,
// types and params (invalid_api_key, session.audio.output.voice).
const IDENTIFIER = /^[a-z]{1,24}(?:[_.](?:[a-z]{1,24}|[0-9]{1,4})){0,7}$/;

/** An upstream identifier (error code, type, param) when it has that shape and length; else undefined. */
export function safeIdentifier(value: unknown): string | undefined {
  return typeof value === 'string' && value.length <= 64 && IDENTIFIER.test(value) ? value : undefined;
}
