import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import type { CircuitBreaker } from '../openai/circuit-breaker.js';
import type { OpenAIClient } from '../openai/client.js';
import { UpstreamError, upstreamAppError } from '../openai/upstream-error.js';
import type { CallStore, MemoryCallStore, TrackedCall } from './calls-store.js';
import type { SessionChoice } from './choices.js';
import type { SecretMinter } from './minter.js';

export type CallEndReason = 'client' | 'deadline' | 'error';

export interface StartedCall {
  callId: string;
  answerSdp: string;
  /** ms since the epoch. */
  endsAt: number;
  upstreamMs: number;
}

export interface CallManagerOptions {
  config: Pick<Config, 'maxCallSeconds' | 'maxConcurrentCallsPerClient'>;
  client: OpenAIClient;
  /** Builds each call's persona and session, as for a client secret. */
  sessions: Pick<SecretMinter, 'sessionFor'>;
  breaker: CircuitBreaker;
  /** The shared store (Redis), if any; `local` serves whenever it does not answer. */
  shared: CallStore | undefined;
  local: MemoryCallStore;
  log: FastifyBaseLogger;
  now: () => number;
  random: () => number;
  onEnded: (reason: CallEndReason) => void;
  onHangupFailure: () => void;
}

/** Every replica looks for due calls at least this often (a call started elsewhere has no timer here). */
const POLL_MS = 1_000;
const CLAIM_BATCH = 50;
/** OpenAI ends every session by itself after 60 minutes: past that, a failing hangup is given up. */
const OPENAI_SESSION_CAP_MS = 3_600_000;
const HANGUP_RETRY_BASE_MS = 2_000;
const HANGUP_RETRY_CAP_MS = 60_000;

const isTransient = (error: unknown) => error instanceof UpstreamError && error.isTransient;

/**
 * Relayed calls: starts them through OpenAI, holds each client's slots, and hangs every call up at
 * its deadline. With Redis any replica hangs up what is due (each due call is claimed by exactly one
 * replica, for a lease longer than a hangup can take), so a replica that dies loses no deadline.
 */
export class CallManager {
  private readonly leaseMs: number;
  private readonly inFlight = new Set<Promise<unknown>>();
  private timer: NodeJS.Timeout | undefined;
  /** performance.now() at which `timer` fires. */
  private timerFiresAt = 0;
  private polling = false;
  private closed = false;

  constructor(private readonly options: CallManagerOptions) {
    this.leaseMs = options.client.deadlineMs + 5_000;
  }

  /** Takes a slot, asks OpenAI to answer the offer, and sets the call's deadline. */
  async start(choice: SessionChoice, sdp: string, clientKey: string, log: FastifyBaseLogger): Promise<StartedCall> {
    const { config, client, breaker, now, sessions } = this.options;
    const slotId = `pending:${randomUUID()}`;
    // A pending slot outlives the slowest possible OpenAI answer, then frees itself if we die.
    const store = await this.reserve(clientKey, slotId, now() + client.deadlineMs + 5_000);
    const { session } = sessions.sessionFor(choice);
    const started = performance.now();
    let created;
    try {
      created = await breaker.run(() => client.createCall(sdp, session, { log }), isTransient);
    } catch (error) {
      await store.release(clientKey, slotId).catch(() => undefined);
      if (error instanceof UpstreamError) throw upstreamAppError(error);
      throw error;
    }
    const upstreamMs = performance.now() - started;
    const startedAt = now();
    const call: TrackedCall = {
      callId: created.callId,
      clientKey,
      startedAt,
      endsAt: startedAt + config.maxCallSeconds * 1000,
      attempts: 0,
    };
    try {
      await store.activate(slotId, call);
    } catch (error) {
      // Redis failed between reserve and activate: the deadline must still be kept, here.
      log.warn({ err: error, call_id: call.callId }, 'calls: shared store failed, keeping the deadline in-process');
      await this.options.local.activate(slotId, call);
    }
    this.wake(call.endsAt);
    return { callId: call.callId, answerSdp: created.answerSdp, endsAt: call.endsAt, upstreamMs };
  }

  /**
   * DELETE by the client: false when there is no such call or it is another client's. A call already
   * being hung up (its deadline came) counts as ended.
   */
  async end(callId: string, clientKey: string, log: FastifyBaseLogger): Promise<boolean> {
    const found = await this.find(callId);
    if (!found || found.call.clientKey !== clientKey) return false;
    const { store, call } = found;
    const now = this.options.now();
    if (!(await store.claim(callId, now, now + this.leaseMs))) return true;
    const error = await this.hangUp(store, call, 'client', log);
    if (error) throw upstreamAppError(error);
    return true;
  }

  /** Hangs up every call due now and waits for the hangups (the timer does this by itself). */
  async hangUpDue(): Promise<void> {
    const claimed = await this.claimDue();
    await Promise.all(claimed.map(({ store, call }) => this.track(this.hangUp(store, call, 'deadline', this.options.log))));
  }

  async activeCount(): Promise<number> {
    const local = await this.options.local.activeCount();
    const shared = this.options.shared;
    if (!shared?.available()) return local;
    return local + (await shared.activeCount().catch(() => 0));
  }

  /** Starts watching deadlines. */
  watch(): void {
    this.schedule(0);
  }

  /**
   * Stops watching and waits for hangups in flight. Deadlines in Redis stay for the other replicas;
   * in-process ones are lost (the calls then run to OpenAI's own 60-minute limit): logged, and
   * README says so. Hanging them up instead would cut every caller at each deploy.
   */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    await Promise.allSettled([...this.inFlight]);
    const orphans = await this.options.local.activeCount();
    if (orphans > 0) {
      this.options.log.warn({ calls: orphans }, 'calls: shutting down with in-process deadlines; these calls end at OpenAI’s own limit');
    }
  }

  private async reserve(clientKey: string, slotId: string, holdUntil: number): Promise<CallStore> {
    const { shared, local, config, now, log } = this.options;
    const max = config.maxConcurrentCallsPerClient;
    let store: CallStore = local;
    let taken: boolean | undefined;
    if (shared?.available()) {
      try {
        taken = await shared.reserve(clientKey, slotId, max, now(), holdUntil);
        store = shared;
      } catch (error) {
        // Same rule as the rate limits: Redis down means counting in-process, never unlimited.
        log.warn({ err: error }, 'calls: Redis failed, counting slots in-process');
      }
    }
    taken ??= await local.reserve(clientKey, slotId, max, now(), holdUntil);
    if (!taken) {
      throw new AppError(429, `Too many calls at once (${max} per client); end one first.`, {
        reason: 'concurrency',
        details: { limit: max },
      });
    }
    return store;
  }

  private async find(callId: string): Promise<{ store: CallStore; call: TrackedCall } | undefined> {
    const { shared, local } = this.options;
    for (const store of shared?.available() ? [shared, local] : [local]) {
      const call = await store.get(callId).catch(() => undefined);
      if (call) return { store, call };
    }
    return undefined;
  }

  private async claimDue(): Promise<{ store: CallStore; call: TrackedCall }[]> {
    const { shared, local, now, log } = this.options;
    const claimed: { store: CallStore; call: TrackedCall }[] = [];
    for (const store of shared?.available() ? [shared, local] : [local]) {
      const at = now();
      try {
        for (const call of await store.claimDue(at, at + this.leaseMs, CLAIM_BATCH)) claimed.push({ store, call });
      } catch (error) {
        log.warn({ err: error }, 'calls: could not read due calls from Redis');
      }
    }
    return claimed;
  }

  /** Hangs the call up and forgets it; on failure it is due again later. Returns the failure, if any. */
  private async hangUp(
    store: CallStore,
    call: TrackedCall,
    reason: CallEndReason,
    log: FastifyBaseLogger,
  ): Promise<UpstreamError | undefined> {
    const { client, now, onEnded, onHangupFailure, random } = this.options;
    try {
      if (call.clientKey === '') {
        // A deadline whose record expired: nothing left to end or free.
        await store.finish(call);
        return undefined;
      }
      const outcome = await client.hangup(call.callId, { log });
      await store.finish(call);
      this.ended(call, reason, log, outcome);
      onEnded(reason);
      return undefined;
    } catch (error) {
      if (!(error instanceof UpstreamError)) {
        log.error({ err: error, call_id: call.callId }, 'calls: hangup bookkeeping failed');
        return undefined;
      }
      onHangupFailure();
      const attempts = call.attempts + 1;
      const at = now();
      if (at > call.startedAt + OPENAI_SESSION_CAP_MS) {
        // OpenAI has ended it by now in any case.
        await store.finish(call).catch(() => undefined);
        this.ended(call, 'error', log, 'gave_up');
        onEnded('error');
        return error;
      }
      const wait = random() * Math.min(HANGUP_RETRY_CAP_MS, HANGUP_RETRY_BASE_MS * 2 ** attempts);
      await store.retryAt(call.callId, at + wait, attempts).catch(() => undefined);
      log.warn({ call_id: call.callId, attempts, retry_in_ms: Math.round(wait), upstream_kind: error.kind }, 'calls: hangup failed, will retry');
      this.wake(at + wait);
      return error;
    }
  }

  private ended(call: TrackedCall, reason: CallEndReason, log: FastifyBaseLogger, outcome: string): void {
    log.info(
      {
        audit: 'call_ended',
        call_id: call.callId,
        client: call.clientKey,
        reason,
        hangup: outcome,
        duration_s: Math.round((this.options.now() - call.startedAt) / 100) / 10,
      },
      'call ended',
    );
  }

  private track<T>(work: Promise<T>): Promise<T> {
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work));
    return work;
  }

  /** Makes sure the loop looks again by `at` (ms since the epoch). */
  private wake(at: number): void {
    this.schedule(Math.max(0, at - this.options.now()));
  }

  /** Sets the timer, unless it already fires sooner. */
  private schedule(delayMs: number): void {
    if (this.closed) return;
    const delay = Math.min(delayMs, POLL_MS);
    const fireAt = performance.now() + delay;
    if (this.timer && fireAt >= this.timerFiresAt) return;
    clearTimeout(this.timer);
    this.timerFiresAt = fireAt;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.poll();
    }, delay);
    this.timer.unref();
  }

  private async poll(): Promise<void> {
    if (this.polling || this.closed) return;
    this.polling = true;
    let next: number | undefined;
    try {
      for (const { store, call } of await this.claimDue()) {
        void this.track(this.hangUp(store, call, 'deadline', this.options.log));
      }
      next = await this.nextDue();
    } finally {
      this.polling = false;
    }
    this.schedule(next === undefined ? POLL_MS : Math.max(0, next - this.options.now()));
  }

  private async nextDue(): Promise<number | undefined> {
    const { shared, local } = this.options;
    const dues = [await local.nextDue()];
    if (shared?.available()) dues.push(await shared.nextDue().catch(() => undefined));
    const known = dues.filter((due): due is number => due !== undefined);
    return known.length > 0 ? Math.min(...known) : undefined;
  }
}
