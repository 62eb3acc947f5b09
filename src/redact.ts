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
