import { AppError } from '../errors.js';

export type BreakerState = 'closed' | 'open' | 'half_open';

export interface CircuitBreakerOptions {
  /** Consecutive failed calls (each call = one mint, with all its retries) that open the circuit. */
  threshold: number;
  cooldownMs: number;
  now?: () => number;
  onTransition?: (from: BreakerState, to: BreakerState, consecutiveFailures: number) => void;
}

class CircuitOpenError extends AppError {
  constructor(retryAfterSeconds: number) {
    super(503, 'OpenAI is failing; the service is pausing calls to it. Try again shortly.', {
      reason: 'breaker',
      retryAfter: retryAfterSeconds,
    });
  }
}

/**
 * Closed: calls go through. `threshold` consecutive transient failures open it. Open: calls fail at
 * once, without touching OpenAI, until `cooldownMs` has passed. Then one call goes through as a
 * probe (half-open) while others still fail fast: its success closes the circuit, its failure
 * opens it for another cooldown.
 */
export class CircuitBreaker {
  private current: BreakerState = 'closed';
  private failures = 0;
  private openedAt = 0;
  private probeInFlight = false;
  private readonly now: () => number;

  constructor(private readonly options: CircuitBreakerOptions) {
    this.now = options.now ?? Date.now;
  }

  get state(): BreakerState {
    return this.current;
  }

  get consecutiveFailures(): number {
    return this.failures;
  }

  /** Milliseconds until a probe may go through (0 when calls go through now). */
  get retryAfterMs(): number {
    if (this.current === 'closed') return 0;
    if (this.current === 'half_open') return this.probeInFlight ? 1000 : 0;
    return Math.max(0, this.openedAt + this.options.cooldownMs - this.now());
  }

  /** Whether a call made now would go through (and not fail fast). */
  get allowsCall(): boolean {
    return this.retryAfterMs === 0;
  }

  /**
   * Runs `call` through the breaker. `isTransient` tells which errors count as OpenAI being unwell;
   * any other outcome (success, or an error OpenAI chose to answer with) shows OpenAI is up.
   */
  async run<T>(call: () => Promise<T>, isTransient: (error: unknown) => boolean): Promise<T> {
    this.admit();
    let result: T;
    try {
      result = await call();
    } catch (error) {
      if (isTransient(error)) this.recordFailure();
      else this.recordSuccess();
      throw error;
    }
    this.recordSuccess();
    return result;
  }

  private admit(): void {
    if (this.current === 'open') {
      const wait = this.retryAfterMs;
      if (wait > 0) throw new CircuitOpenError(Math.max(1, Math.ceil(wait / 1000)));
      this.transition('half_open');
    }
    if (this.current === 'half_open') {
      if (this.probeInFlight) throw new CircuitOpenError(1);
      this.probeInFlight = true;
    }
  }

  private recordSuccess(): void {
    this.failures = 0;
    this.probeInFlight = false;
    if (this.current !== 'closed') this.transition('closed');
  }

  private recordFailure(): void {
    this.failures += 1;
    this.probeInFlight = false;
    if (this.current === 'half_open' || (this.current === 'closed' && this.failures >= this.options.threshold)) {
      this.openedAt = this.now();
      this.transition('open');
    }
  }

  private transition(to: BreakerState): void {
    const from = this.current;
    this.current = to;
    this.options.onTransition?.(from, to, this.failures);
  }
}
