import { randomUUID } from 'node:crypto';
import type { FastifyBaseLogger } from 'fastify';
import type { Config } from '../config.js';
import { AppError } from '../errors.js';
import type { CircuitBreaker } from '../openai/circuit-breaker.js';
import type { OpenAIClient } from '../openai/client.js';
import { UpstreamError, upstreamAppError } from '../openai/upstream-error.js';
import { TOKEN_KINDS } from '../usage/pricing.js';
import type { CallSpend } from './call-spend.js';
import { PENDING_PREFIX, type CallStore, type TrackedCall } from './calls-store.js';
import type { SessionChoice } from './choices.js';
import type { SecretMinter } from './minter.js';
import type { Sideband, Sidebands } from './sideband.js';

/**
 * Why a call ended: delete (DELETE by its client), deadline (MAX_CALL_SECONDS), spend (its client's
 * spend cap), budget (the global spend cap), sideband (no sideband while a cap is on), error (a
 * hangup given up), orphan (OpenAI created it after the service stopped waiting: the client got 504).
 */
export type CallEndReason = 'delete' | 'deadline' | 'spend' | 'budget' | 'sideband' | 'error' | 'orphan';

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
  /** In-process, or Redis with this replica's own copy serving while it does not answer. */
  store: CallStore;
  log: FastifyBaseLogger;
  now: () => number;
  random: () => number;
  onEnded: (reason: CallEndReason) => void;
  onHangupFailure: () => void;
  /** Prices each call's usage and says when a cap is reached. */
  spend: CallSpend;
  /** Opens a sideband per call started here (undefined: calls are not watched). */
  sidebands: Sidebands | undefined;
}

/** A call started by this replica, watched over its sideband. */
interface WatchedCall {
  call: TrackedCall;
  store: CallStore;
  sideband: Sideband;
  /** Priced so far, by token kind. */
  tokens: Record<string, number>;
  costNanoUsd: number;
  responses: number;
  /** Set once ending it has begun; a failed hangup is retried with the same reason. */
  ending?: CallEndReason;
}

/** Every replica looks for due calls at least this often (a call started elsewhere has no timer here). */
const POLL_MS = 1_000;
const CLAIM_BATCH = 50;
/** OpenAI ends every session by itself after 60 minutes: past that, a failing hangup is given up. */
const OPENAI_SESSION_CAP_MS = 3_600_000;
const HANGUP_RETRY_BASE_MS = 2_000;
const HANGUP_RETRY_CAP_MS = 60_000;
const CONCURRENCY_RETRY_AFTER_SECONDS = 5;

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
  /** Calls this replica started and watches: their sidebands, their usage so far. */
  private readonly watched = new Map<string, WatchedCall>();
  private checkingCaps = false;

  constructor(private readonly options: CallManagerOptions) {
    this.leaseMs = options.client.deadlineMs + 5_000;
  }

  /** Takes a slot, asks OpenAI to answer the offer, and sets the call's deadline. */
  async start(choice: SessionChoice, sdp: string, clientKey: string, log: FastifyBaseLogger): Promise<StartedCall> {
    const { config, client, breaker, now, sessions } = this.options;
    const slotId = `${PENDING_PREFIX}${randomUUID()}`;
    // A pending slot outlives the slowest possible OpenAI answer, then frees itself if we die.
    const store = await this.reserve(clientKey, slotId, now() + client.deadlineMs + 5_000);
    const { session, instructions } = sessions.sessionFor(choice);
    const started = performance.now();
    let created;
    try {
      created = await breaker.run(() => client.createCall(sdp, session, { log }, (late) => this.hangUpOrphan(late.callId, clientKey, log)), isTransient);
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
    // Redis failing between reserve and activate is the store's concern: it keeps the deadline here.
    await store.activate(slotId, call);
    this.wake(call.endsAt);
    // Right after OpenAI answered: the sideband sees the call from its first response.
    this.watchCall(call, store, choice.model, instructions, session.max_output_tokens);
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
    const error = await this.hangUp(store, call, 'delete', log);
    if (error) throw upstreamAppError(error);
    return true;
  }

  /** Hangs up every call due now and waits for the hangups (the timer does this by itself). */
  async hangUpDue(): Promise<void> {
    const claimed = await this.claimDue();
    await Promise.all(claimed.map(({ store, call }) => this.track(this.hangUp(store, call, this.dueReason(call), this.options.log))));
  }

  async activeCount(): Promise<number> {
    return this.options.store.activeCount();
  }

  /** Calls each of these clients holds now (across replicas with Redis): the operator's report. */
  activeCallsOf(clientKeys: readonly string[]): Promise<ReadonlyMap<string, number>> {
    return this.options.store.activeCallsOf(clientKeys, this.options.now());
  }

  /** Starts watching deadlines. */
  watch(): void {
    this.schedule(0);
  }

  /**
   * Stops watching and waits for hangups in flight. Deadlines in Redis stay for the other replicas;
   * ones only this process holds are lost (the calls then run to OpenAI's own 60-minute limit): logged, and
   * README says so. Hanging them up instead would cut every caller at each deploy.
   */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.timer);
    // The calls go on (see above); this replica stops watching them.
    if (this.watched.size > 0) this.options.log.warn({ calls: this.watched.size }, 'calls: shutting down, closing the sidebands of calls still running');
    for (const watched of [...this.watched.values()]) this.unwatch(watched);
    await Promise.allSettled([...this.inFlight]);
    const orphans = await this.options.store.localOnlyCount();
    if (orphans > 0) {
      this.options.log.warn({ calls: orphans }, 'calls: shutting down with in-process deadlines; these calls end at OpenAI’s own limit');
    }
  }

  /**
   * A call OpenAI created after the attempt timed out: its client got a 504 and holds no slot for
   * it, so it is hung up at once (the hangup's own retries) rather than left to run to OpenAI's
   * 60-minute limit.
   */
  private hangUpOrphan(callId: string, clientKey: string, log: FastifyBaseLogger): void {
    const { client, now, onEnded, onHangupFailure } = this.options;
    const call: TrackedCall = { callId, clientKey, startedAt: now(), endsAt: now(), attempts: 0 };
    void this.track(
      client.hangup(callId, { log }).then(
        (outcome) => {
          this.ended(call, 'orphan', log, outcome);
          onEnded('orphan');
        },
        (error: unknown) => {
          onHangupFailure();
          log.error({ call_id: callId, upstream_kind: error instanceof UpstreamError ? error.kind : 'internal' }, 'calls: a call OpenAI created late could not be hung up; it ends at OpenAI’s own limit');
        },
      ),
    );
  }

  private async reserve(clientKey: string, slotId: string, holdUntil: number): Promise<CallStore> {
    const { store, config, now } = this.options;
    const max = config.maxConcurrentCallsPerClient;
    if (!(await store.reserve(clientKey, slotId, max, now(), holdUntil))) {
      throw new AppError(429, `Too many calls at once (${max} per client); end one first.`, {
        reason: 'concurrency',
        // A slot frees when one of the client's calls ends, which the service cannot foresee: a poll.
        retryAfter: CONCURRENCY_RETRY_AFTER_SECONDS,
        details: { limit: max },
      });
    }
    return store;
  }

  private async find(callId: string): Promise<{ store: CallStore; call: TrackedCall } | undefined> {
    const { store } = this.options;
    const call = await store.get(callId);
    return call ? { store, call } : undefined;
  }

  private async claimDue(): Promise<{ store: CallStore; call: TrackedCall }[]> {
    const { store, now, log } = this.options;
    const at = now();
    try {
      return (await store.claimDue(at, at + this.leaseMs, CLAIM_BATCH)).map((call) => ({ store, call }));
    } catch (error) {
      log.warn({ err: error }, 'calls: could not read due calls');
      return [];
    }
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
        const watched = this.watched.get(call.callId);
        if (watched) this.unwatch(watched);
        return undefined;
      }
      // OpenAI closes the sideband with the call: not a drop to repair.
      this.watched.get(call.callId)?.sideband.finishing();
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

  /** The audit line of a call's end; its usage when this replica watched it (then it stops watching). */
  private ended(call: TrackedCall, reason: CallEndReason, log: FastifyBaseLogger, outcome: string): void {
    const watched = this.watched.get(call.callId);
    if (watched) this.unwatch(watched);
    log.info(
      {
        audit: 'call_ended',
        call_id: call.callId,
        client: call.clientKey,
        reason,
        hangup: outcome,
        duration_s: Math.round((this.options.now() - call.startedAt) / 100) / 10,
        ...(watched ? usageFields(watched) : { usage_seen: false }),
      },
      'call ended',
    );
  }

  /** Opens the call's sideband: its usage is charged, and a lost sideband ends the call while a cap is on. */
  private watchCall(call: TrackedCall, store: CallStore, model: string, instructions: string, maxOutputTokens: number | 'inf'): void {
    const { sidebands } = this.options;
    if (!sidebands || this.closed) return;
    const watched = { call, store, tokens: {}, costNanoUsd: 0, responses: 0 } as Omit<WatchedCall, 'sideband'> as WatchedCall;
    watched.sideband = sidebands.watch(call.callId, model, { instructions, max_output_tokens: maxOutputTokens }, {
      usage: (usage, usageModel) => void this.track(this.charge(watched, usage, usageModel)),
      lost: () => void this.track(this.sidebandLost(watched)),
    });
    this.watched.set(call.callId, watched);
  }

  private unwatch(watched: WatchedCall): void {
    watched.sideband.close();
    if (this.watched.get(watched.call.callId) === watched) this.watched.delete(watched.call.callId);
  }

  /** One response.done: charged to the client and the service; a cap reached ends calls here at once. */
  private async charge(watched: WatchedCall, usage: unknown, model: string): Promise<void> {
    const { spend, log } = this.options;
    let result: Awaited<ReturnType<CallSpend['charge']>>;
    try {
      result = await spend.charge(watched.call.clientKey, model, usage);
    } catch (error) {
      log.error({ err: error, call_id: watched.call.callId }, 'calls: charging a call’s usage failed');
      return;
    }
    watched.responses += 1;
    if (result.priced) {
      // Every kind the pricing counts (it may know more than text and audio).
      for (const [kind, count] of Object.entries<number>(result.priced.tokens)) watched.tokens[kind] = (watched.tokens[kind] ?? 0) + count;
      watched.costNanoUsd += result.priced.costNanoUsd;
    }
    if (result.capped === 'global') {
      await this.endWatched([...this.watched.values()], 'budget');
    } else if (result.capped === 'client') {
      const clientKey = watched.call.clientKey;
      await this.endWatched([...this.watched.values()].filter((other) => other.call.clientKey === clientKey), 'spend');
    }
  }

  /** The sideband stayed shut for its open timeout: the call may be over elsewhere, or is now unwatched. */
  private async sidebandLost(watched: WatchedCall): Promise<void> {
    if (this.watched.get(watched.call.callId) !== watched || watched.ending) return;
    let current: TrackedCall | undefined | 'unknown';
    try {
      current = await watched.store.get(watched.call.callId);
    } catch {
      current = 'unknown';
    }
    if (current === undefined) {
      // Ended by another replica (DELETE or deadline there): OpenAI closed the sideband with the call.
      this.unwatch(watched);
      this.options.log.info({ audit: 'call_usage', call_id: watched.call.callId, client: watched.call.clientKey, ...usageFields(watched) }, 'call usage');
      return;
    }
    // Fail closed: while a cap is on, a call whose spend cannot be seen does not go on.
    if (this.options.spend.enforcing) await this.endWatched([watched], 'sideband');
  }

  /** Hangs these watched calls up (each claimed first, so one replica ends it once). */
  private async endWatched(calls: readonly WatchedCall[], reason: CallEndReason): Promise<void> {
    const { now, log } = this.options;
    await Promise.all(
      calls
        .filter((watched) => !watched.ending)
        .map(async (watched) => {
          watched.ending = reason;
          const at = now();
          let claimed = false;
          try {
            claimed = await watched.store.claim(watched.call.callId, at, at + this.leaseMs);
          } catch (error) {
            log.warn({ err: error, call_id: watched.call.callId }, 'calls: could not claim a call to end it');
          }
          // Not claimed: someone else is ending it now (or it is over); the next look tries again if not.
          if (!claimed) {
            watched.ending = undefined;
            return;
          }
          await this.hangUp(watched.store, watched.call, reason, log);
        }),
    );
  }

  /**
   * Every look of the loop (at least once a second): a client of a call watched here may have
   * reached its cap on another replica, or the service its global cap.
   */
  private async enforceCaps(): Promise<void> {
    const { spend, log } = this.options;
    if (!spend.enforcing || this.checkingCaps || this.watched.size === 0) return;
    this.checkingCaps = true;
    try {
      const live = [...this.watched.values()].filter((watched) => !watched.ending);
      if (live.length === 0) return;
      const capped = await spend.capped([...new Set(live.map((watched) => watched.call.clientKey))]);
      if (capped.global) void this.track(this.endWatched(live, 'budget'));
      else if (capped.clients.size > 0) void this.track(this.endWatched(live.filter((watched) => capped.clients.has(watched.call.clientKey)), 'spend'));
    } catch (error) {
      log.warn({ err: error }, 'calls: could not read the spend caps');
    } finally {
      this.checkingCaps = false;
    }
  }

  /** A claimed due call: its deadline, or the retry of an end that began here for another reason. */
  private dueReason(call: TrackedCall): CallEndReason {
    return this.watched.get(call.callId)?.ending ?? 'deadline';
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
      void this.track(this.enforceCaps());
      for (const { store, call } of await this.claimDue()) {
        void this.track(this.hangUp(store, call, this.dueReason(call), this.options.log));
      }
      next = await this.nextDue();
    } finally {
      this.polling = false;
    }
    this.schedule(next === undefined ? POLL_MS : Math.max(0, next - this.options.now()));
  }

  private async nextDue(): Promise<number | undefined> {
    return this.options.store.nextDue();
  }
}

/** The `call ended` / `call usage` fields: tokens by kind, cost in USD, responses priced. */
function usageFields(watched: WatchedCall): Record<string, unknown> {
  const tokens: Record<string, number> = {};
  for (const kind of TOKEN_KINDS) tokens[kind] = 0;
  Object.assign(tokens, watched.tokens);
  return { tokens, cost_usd: watched.costNanoUsd / 1e9, responses: watched.responses };
}
