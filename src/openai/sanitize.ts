// OpenAI's error text can quote part of the key ("Incorrect API key provided: sk-abc***xyz").
const KEY_LIKE = /\b(sk|ek|rk)[-_][A-Za-z0-9_\-*.]{4,}/g;

/** Removes anything key- or secret-shaped from text before it is logged; caps its length. */
export function scrubSecrets(text: string, maxLength = 500): string {
  return text.replace(KEY_LIKE, '$1-[redacted]').slice(0, maxLength);
}
