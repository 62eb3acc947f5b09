import type { FastifyBaseLogger } from 'fastify';
import type { MintedSecret } from '../openai/client.js';

export interface SecretPoolOptions {
  size: number;
  /** A pooled secret with less than this left is dropped, never handed out. */
  minRemainingSeconds: number;
  /** The pool never starts mints faster than this. */
  refillPerSecond: number;
  mint: () => Promise<MintedSecret>;
  /** Milliseconds until OpenAI may be called (the circuit breaker's wait); 0 = now. */
  upstreamWaitMs: () => number;
  log: FastifyBaseLogger;
  /** Wall clock (ms) for expiry; pacing uses the monotonic clock. */
  now?: () => number;
}

export interface SecretPoolStats {
  size: number;
  capacity: number;
  hits: number;
  misses: number;
  expired: number;
}

/**
 * Warm secrets for the default session. Each secret leaves the pool once (shift), so no two clients
 * ever share one. Refills in the background, rate-limited, and waits while the breaker is open.
 */
export class SecretPool {
  private readonly secrets: MintedSecret[] = [];
  private readonly minIntervalMs: number;
  private readonly now: () => number;
  private inFlight = 0;
  private lastLaunch = Number.NEGATIVE_INFINITY;
  private timer: NodeJS.Timeout | undefined;
  private expiryTimer: NodeJS.Timeout | undefined;
  private closed = true;
  private hits = 0;
  private misses = 0;
  private expired = 0;
  private failures = 0;
  private lastFailureAt = 0;

  constructor(private readonly options: SecretPoolOptions) {
    this.minIntervalMs = 1000 / options.refillPerSecond;
    this.now = options.now ?? Date.now;
  }

  start(): void {
    this.closed = false;
    this.pump();
  }

  /** Discards every pooled secret and stops refilling. */
  close(): void {
    this.closed = true;
    clearTimeout(this.timer);
    clearTimeout(this.expiryTimer);
    this.timer = undefined;
    this.expiryTimer = undefined;
    this.secrets.length = 0;
  }

  /** A fresh secret for exactly one caller, or undefined (a miss). */
  take(): MintedSecret | undefined {
    this.dropStale();
    const secret = this.secrets.shift();
    if (secret) this.hits += 1;
    else this.misses += 1;
    this.pump();
    return secret;
  }

  get stats(): SecretPoolStats {
    return {
      size: this.secrets.length,
      capacity: this.options.size,
      hits: this.hits,
      misses: this.misses,
      expired: this.expired,
    };
  }

  private isStale(secret: MintedSecret): boolean {
    return secret.expiresAt * 1000 - this.now() < this.options.minRemainingSeconds * 1000;
  }

  private dropStale(): void {
    // Secrets arrive in expiry order, so the stale ones are at the front.
    while (this.secrets.length > 0 && this.isStale(this.secrets[0] as MintedSecret)) {
      this.secrets.shift();
      this.expired += 1;
    }
  }

  private scheduleExpiry(): void {
    clearTimeout(this.expiryTimer);
    this.expiryTimer = undefined;
    const oldest = this.secrets[0];
    if (this.closed || !oldest) return;
    const staleInMs = oldest.expiresAt * 1000 - this.options.minRemainingSeconds * 1000 - this.now();
    this.expiryTimer = setTimeout(
      () => {
        this.expiryTimer = undefined;
        this.dropStale();
        this.scheduleExpiry();
        this.pump();
      },
      Math.max(0, staleInMs) + 5,
    );
    this.expiryTimer.unref();
  }

  private wakeIn(ms: number): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.pump();
    }, ms);
    this.timer.unref();
  }

  private pump(): void {
    if (this.closed || this.timer) return;
    if (this.secrets.length + this.inFlight >= this.options.size) return;
    const upstreamWait = this.options.upstreamWaitMs();
    if (upstreamWait > 0) return this.wakeIn(upstreamWait);
    // After failures (a bad key, say) back off, up to a minute, rather than mint at the full rate.
    const now = performance.now();
    const failureWait =
      this.failures > 0 ? this.lastFailureAt + Math.min(60_000, 1000 * 2 ** (this.failures - 1)) - now : 0;
    const rateWait = Math.max(failureWait, this.lastLaunch + this.minIntervalMs - now);
    if (rateWait > 0) return this.wakeIn(rateWait);

    this.lastLaunch = now;
    this.inFlight += 1;
    this.options
      .mint()
      .then(
        (secret) => {
          if (this.failures > 0) this.options.log.info('token pool: refilling again');
          this.failures = 0;
          if (this.closed || this.isStale(secret)) return;
          this.secrets.push(secret);
                if (this.secrets.length === 1) this.scheduleExpiry();
        },
        (error: unknown) => {
          if (this.failures === 0) {
            this.options.log.warn({ err_kind: (error as Error).name }, 'token pool: refill failed; backing off');
          }
          this.failures += 1;
          this.lastFailureAt = performance.now();
        },
      )
      .finally(() => {
        this.inFlight -= 1;
        this.pump();
      });
    this.pump();
  }
}
