/** Sizes the service enforces; the docs and error messages quote these, never a copy. */

/** JSON bodies (the token route). */
export const BODY_LIMIT_BYTES = 16 * 1024;
/** Request headers larger than this are refused (431) before any work: a cap on what a log line or a key can carry. */
export const MAX_HEADER_BYTES = 8 * 1024;
/** Longest header-derived value that goes into a key or a log line. */
export const MAX_LOGGED_CHARS = 200;
/**
 * A browser's offer (audio + data channel, a handful of ICE candidates) is 2 to 8 KiB; 32 KiB leaves
 * room for many candidates and codecs while bounding what is buffered and forwarded per request.
 */
export const SDP_LIMIT_BYTES = 32 * 1024;
/** The SDP plus the `options` part (instructions up to 12,000 chars) and the multipart framing. */
export const MULTIPART_LIMIT_BYTES = 96 * 1024;
/** Fastify's own cut-off before the calls route's parsers look: anything past it is not worth reading. */
export const CALL_BODY_LIMIT_BYTES = 128 * 1024;

/** "16 KiB" */
export const kib = (bytes: number) => `${bytes / 1024} KiB`;
