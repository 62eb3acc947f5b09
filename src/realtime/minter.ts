import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import type { CircuitBreaker } from '../openai/circuit-breaker.js';
import type { MintedSecret, OpenAIClient } from '../openai/client.js';
import { UpstreamError, upstreamAppError } from '../openai/upstream-error.js';
import type { SecretPool } from './secret-pool.js';
import { choiceKey, resolveChoice, type SessionChoice } from './choices.js';
import { buildClientSecretRequest, buildInstructions, type RealtimeSession, type SessionConfig } from './session.js';

export interface MintOutcome {
  secret: MintedSecret;
  instructions: string;
  source: 'pool' | 'upstream';
  /** Time spent waiting on OpenAI for this request (0 for a pool hit; else the wait for a refill or a mint). */
  upstreamMs: number;
}

/** A poolable configuration (no free-text instructions) with its persona and upstream body, built once. */
export interface PreparedSession extends BuiltSession {
  key: string;
  choice: SessionChoice;
}

/** A choice turned into what OpenAI is sent: the persona, the session object, the client-secret body. */
export interface BuiltSession {
  instructions: string;
  session: RealtimeSession;
  /** The serialized body of POST /realtime/client_secrets. */
  body: string;
}

/** What the minter reads from the config. */
export type MinterConfig = SessionConfig & Pick<Config, 'tokenTtlSeconds' | 'defaultInstructions' | 'realtimeModel' | 'realtimeVoice'>;

// Sessions kept prepared; past this many (a long tail of sports) the cache starts over.
const PREPARED_LIMIT = 256;

const isTransient = (error: unknown) => error instanceof UpstreamError && error.isTransient;

/**
 * Turns a session choice into what OpenAI is sent (the one place a persona is built, for secrets and
 * calls alike) and into a client secret: from the warm pool when it can, else from OpenAI.
 */
export class SecretMinter {
  /** The default session: what the pool warms at boot. */
  readonly defaultSession: PreparedSession;
  private readonly prepared = new Map<string, PreparedSession>();
  private pool: SecretPool<PreparedSession> | undefined;

  constructor(
    private readonly config: MinterConfig,
    private readonly client: OpenAIClient,
    private readonly breaker: CircuitBreaker,
  ) {
    this.defaultSession = this.prepare(resolveChoice(config, undefined));
  }

  usePool(pool: SecretPool<PreparedSession>): void {
    this.pool = pool;
  }

  /** A secret for a prepared session straight from OpenAI (what the pool refills with). */
  mintPrepared(session: PreparedSession, log: FastifyBaseLogger): Promise<MintedSecret> {
    return this.callOpenAI(session.body, log);
  }

  async mint(choice: SessionChoice, log: FastifyBaseLogger): Promise<MintOutcome> {
    let instructions: string;
    let body: string;
    if (choice.instructions === undefined) {
      const session = this.prepare(choice);
      if (this.pool) {
        const pooled = this.pool.take(session.key, session);
        if (pooled) return { secret: pooled, instructions: session.instructions, source: 'pool', upstreamMs: 0 };
        const started = performance.now();
        const refill = await this.pool.waitForRefill(session.key);
        if (refill) {
          return { secret: refill, instructions: session.instructions, source: 'pool', upstreamMs: performance.now() - started };
        }
      }
      ({ instructions, body } = session);
    } else {
      // Free text: neither pooled nor cached.
      ({ instructions, body } = this.build(choice));
    }
    const started = performance.now();
    try {
      const secret = await this.callOpenAI(body, log);
      return { secret, instructions, source: 'upstream', upstreamMs: performance.now() - started };
    } catch (error) {
      if (error instanceof UpstreamError) throw upstreamAppError(error);
      throw error;
    }
  }

  /** The persona and session of a choice: prepared once when poolable, built afresh for free text. */
  sessionFor(choice: SessionChoice): BuiltSession {
    return choice.instructions === undefined ? this.prepare(choice) : this.build(choice);
  }

  private prepare(choice: SessionChoice): PreparedSession {
    const key = choiceKey(choice);
    let session = this.prepared.get(key);
    if (!session) {
      if (this.prepared.size >= PREPARED_LIMIT) this.prepared.clear();
      session = { key, choice, ...this.build(choice) };
      this.prepared.set(key, session);
    }
    return session;
  }

  private build(choice: SessionChoice): BuiltSession {
    const instructions = buildInstructions(this.config, choice);
    const request = buildClientSecretRequest(this.config, choice, instructions);
    return { instructions, session: request.session, body: JSON.stringify(request) };
  }

  private callOpenAI(body: string, log: FastifyBaseLogger): Promise<MintedSecret> {
    return this.breaker.run(() => this.client.createClientSecret(body, { log }), isTransient);
  }
}
