import type { FetchImplementation } from 'jose';

/** A real JWKS is a few KiB; a megabyte is hundreds of keys. Past it the answer is refused unread. */
export const JWKS_MAX_BYTES = 1 << 20;
const BACKOFF_BASE_MS = 1_000;
const BACKOFF_CAP_MS = 30_000;

export interface JwksFetchOptions {
  maxBytes?: number;
  /** The wait after the first failed fetch; it doubles with each further failure, up to 30 s. */
  failureBackoffMs?: number;
  /** Monotonic clock (ms). */
  now?: () => number;
}

/** Why no JWKS fetch was made or kept; the verifier answers 503 for it (the token may be fine). */
export class JwksUnavailable extends Error {
  override readonly name = 'JwksUnavailable';
}

/** The body, or a refusal once more than `maxBytes` have come: reading stops there. */
async function cappedBody(response: Response, maxBytes: number): Promise<string> {
  const declared = Number(response.headers.get('content-length') ?? Number.NaN);
  if (declared > maxBytes) {
    await response.body?.cancel();
    throw new JwksUnavailable(`the JWKS is larger than ${maxBytes} bytes (Content-Length)`);
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = response.body?.getReader();
  if (!reader) return '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > maxBytes) {
      await reader.cancel();
      throw new JwksUnavailable(`the JWKS is larger than ${maxBytes} bytes`);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/**
 * jose's fetch for the remote JWKS, bounded two ways: the body is capped (a 60 MB "JWKS" is refused
 * after the first megabyte, not held in memory), and after a failure (network, not 200, too large,
 * not JSON) no fetch is made until a backoff has passed, however many unknown `kid`s arrive.
 * jose's own cooldown only spaces fetches after a success.
 */
export function boundedJwksFetch(options: JwksFetchOptions = {}): FetchImplementation {
  const maxBytes = options.maxBytes ?? JWKS_MAX_BYTES;
  const baseMs = options.failureBackoffMs ?? BACKOFF_BASE_MS;
  const now = options.now ?? (() => performance.now());
  let failures = 0;
  let retryAt = Number.NEGATIVE_INFINITY;

  const failed = (error: unknown): never => {
    failures += 1;
    retryAt = now() + Math.min(BACKOFF_CAP_MS, baseMs * 2 ** (failures - 1));
    throw error;
  };

  return async function fetchJwks(url, init) {
    if (now() < retryAt) throw new JwksUnavailable('the last JWKS fetch failed; waiting before the next');
    let response: Response;
    let body: string;
    try {
      response = await fetch(url, init);
      if (response.status !== 200) {
        await response.body?.cancel();
        throw new JwksUnavailable(`the JWKS answered ${response.status}`);
      }
      body = await cappedBody(response, maxBytes);
      JSON.parse(body);
    } catch (error) {
      return failed(error);
    }
    failures = 0;
    retryAt = Number.NEGATIVE_INFINITY;
    return new Response(body, { status: 200, headers: { 'content-type': 'application/json' } });
  };
}
