/** Re-checks a condition on each turn of the event loop (with a short pause) until it holds. */
export async function waitUntil(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/**
 * Lets the event loop turn. Back-to-back inject() calls resolve through microtasks only, which
 * starves timers; the admission plugin then sees a second with no event-loop samples, reads it as
 * a stuck loop, and (rightly, for one) new requests get 503. Long inject loops call this.
 */
export function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
