import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import type { CircuitBreaker } from '../openai/circuit-breaker.js';
import type { MintedSecret, OpenAIClient } from '../openai/client.js';
import { UpstreamError, upstreamAppError } from '../openai/upstream-error.js';
import type { SecretPool } from './secret-pool.js';
import { buildClientSecretRequest, buildInstructions, isDefaultChoice, resolveChoice, type SessionChoice } from './session.js';

export interface MintOutcome {
  secret: MintedSecret;
  instructions: string;
  source: 'pool' | 'upstream';
  /** Time spent waiting on OpenAI for this request (0 for a pool hit). */
  upstreamMs: number;
}

const isTransient = (error: unknown) => error instanceof UpstreamError && error.isTransient;

/** Turns a session choice into a client secret: from the warm pool when it can, else from OpenAI. */
export class SecretMinter {
  private readonly defaultInstructions: string;
  private readonly defaultBody: string;
  private pool: SecretPool | undefined;

  constructor(
    private readonly config: Config,
    private readonly client: OpenAIClient,
    private readonly breaker: CircuitBreaker,
  ) {
    const defaults = resolveChoice(config, undefined);
    // The default session is most requests: build and serialize its body once.
    this.defaultInstructions = buildInstructions(config, defaults);
    this.defaultBody = JSON.stringify(buildClientSecretRequest(config, defaults, this.defaultInstructions));
  }

  usePool(pool: SecretPool): void {
    this.pool = pool;
  }

  /** A default-session secret straight from OpenAI (what the pool refills with). */
  mintDefault(log: FastifyBaseLogger): Promise<MintedSecret> {
    return this.callOpenAI(this.defaultBody, log);
  }

  async mint(choice: SessionChoice, log: FastifyBaseLogger): Promise<MintOutcome> {
    const isDefault = isDefaultChoice(this.config, choice);
    if (isDefault && this.pool) {
      const pooled = this.pool.take();
      if (pooled) return { secret: pooled, instructions: this.defaultInstructions, source: 'pool', upstreamMs: 0 };
    }
    const instructions = isDefault ? this.defaultInstructions : buildInstructions(this.config, choice);
    const body = isDefault
      ? this.defaultBody
      : JSON.stringify(buildClientSecretRequest(this.config, choice, instructions));
    const started = performance.now();
    try {
      const secret = await this.callOpenAI(body, log);
      return { secret, instructions, source: 'upstream', upstreamMs: performance.now() - started };
    } catch (error) {
      if (error instanceof UpstreamError) throw upstreamAppError(error);
      throw error;
    }
  }

  private callOpenAI(body: string, log: FastifyBaseLogger): Promise<MintedSecret> {
    return this.breaker.run(() => this.client.createClientSecret(body, { log }), isTransient);
  }
}
