import { plainWords, safeIdentifier } from '../redact.js';

/**
 * What of OpenAI's error answer may be logged. OpenAI (or anything between us and it) can echo
 * the key back in any encoding, so nothing of the answer is logged verbatim: only fields that fit
 * a known shape, and the message reduced to plain words.
 */
export interface UpstreamErrorFields {
  /** `error.type`, `error.code`, `error.param`: each only when it is a short lower-case identifier. */
  type?: string;
  code?: string;
  param?: string;
  /** `error.message` (or a text body) reduced to plain words; anything else is `[cut]`. */
  message?: string;
  /** `x-request-id` when it has OpenAI's shape (req_ + hex) and is not text in disguise. */
  requestId?: string;
}

// OpenAI's request ids are `req_` and 32 hex digits; a little room either way.
const OPENAI_REQUEST_ID = /^req_[0-9a-f]{16,64}$/;
// Random bytes rarely give this many printable characters in a row; hex-encoded text always does.
const PRINTABLE_RUN = 12;

/** True when some alignment of the hex digits reads as `PRINTABLE_RUN` printable ASCII characters. */
function hexReadsAsText(hex: string): boolean {
  for (const offset of [0, 1]) {
    let run = 0;
    for (let i = offset; i + 2 <= hex.length; i += 2) {
      const byte = parseInt(hex.slice(i, i + 2), 16);
      run = byte >= 0x20 && byte < 0x7f ? run + 1 : 0;
      if (run >= PRINTABLE_RUN) return true;
    }
  }
  return false;
}

/** OpenAI's request id, only when it has OpenAI's shape; anything else (an echo, a guess) is dropped. */
export function openaiRequestId(value: string | string[] | undefined): string | undefined {
  const id = Array.isArray(value) ? value[0] : value;
  if (id === undefined || !OPENAI_REQUEST_ID.test(id)) return undefined;
  return hexReadsAsText(id.slice('req_'.length)) ? undefined : id;
}

/** The loggable fields of an upstream error answer: its body (JSON or text) and its headers. */
export function upstreamErrorFields(body: string, headers: Record<string, string | string[] | undefined>): UpstreamErrorFields {
  const fields: UpstreamErrorFields = {};
  const requestId = openaiRequestId(headers['x-request-id']);
  if (requestId) fields.requestId = requestId;
  let error: unknown;
  try {
    error = (JSON.parse(body) as { error?: unknown } | null)?.error;
  } catch {
    // Not JSON (a proxy's HTML or text page): only its plain words.
    const message = plainWords(body);
    return message === '' ? fields : { ...fields, message };
  }
  if (typeof error === 'string') error = { message: error };
  if (error === null || typeof error !== 'object') return fields;
  const { type, code, param, message } = error as Record<string, unknown>;
  const safe = { type: safeIdentifier(type), code: safeIdentifier(code), param: safeIdentifier(param) };
  for (const [name, value] of Object.entries(safe)) if (value !== undefined) fields[name as 'type' | 'code' | 'param'] = value;
  if (typeof message === 'string') {
    const words = plainWords(message);
    if (words !== '') fields.message = words;
  }
  return fields;
}

/** The fields as log-line keys (openai_code, openai_message, ...), absent ones left out. */
export function upstreamLogFields(fields: UpstreamErrorFields): Record<string, string> {
  const line: Record<string, string> = {};
  if (fields.requestId) line.openai_request_id = fields.requestId;
  if (fields.type) line.openai_type = fields.type;
  if (fields.code) line.openai_code = fields.code;
  if (fields.param) line.openai_param = fields.param;
  if (fields.message) line.openai_message = fields.message;
  return line;
}
