import type { RedisClient, SharedState } from '../redis.js';
import { MemoryCallStore, RedisCallStore, type CallStore, type Removal, type TrackedCall } from './calls-store.js';

/** How often a replica drops from its copy the calls another replica ended. */
const PRUNE_EVERY_MS = 5_000;

/**
 * Call slots and deadlines in Redis, with this replica's own copy of what it created. While Redis
 * answers, the copy follows it; while it does not, the copy serves (the replica still counts the
 * slots it holds and hangs up the calls it started, at their deadlines). When Redis answers again
 * (or is found emptied) the copy is put back: calls, pending slots, and the removal of what was
 * ended meanwhile. Worst cases: docs/redis.md.
 */
export class FailoverCallStore implements CallStore {
  private readonly shared: RedisCallStore;
  /** Every slot and call this replica created and has not seen end. */
  private readonly own = new MemoryCallStore();
  /** Ids (slots and calls) held here only: Redis has never had them. */
  private readonly unshared = new Set<string>();
  /** Calls ended and slots given back here while Redis could not hear it. */
  private readonly removals = new Map<string, Removal>();
  private knownEpoch: string | undefined;
  private prunedAt = performance.now();

  constructor(
    private readonly redis: RedisClient,
    private readonly state: SharedState,
    private readonly now: () => number,
  ) {
    this.shared = new RedisCallStore(redis, (epoch) => this.sawEpoch(epoch));
    state.onRestore(() => this.restore());
  }

  async reserve(clientKey: string, slotId: string, max: number, now: number, holdUntil: number): Promise<boolean> {
    const inEpoch = () => this.shared.reserveInEpoch(this.knownEpoch ?? '-', clientKey, slotId, max, now, holdUntil);
    let taken = await this.onShared(inEpoch);
    if (taken === 'stale') {
      // Redis lost what this replica put there (or it never put anything yet): put it back first,
      // so the count includes the slots this replica holds.
      taken = await this.onShared(async () => {
        const known = this.knownEpoch;
        await this.restore();
        if (known !== undefined && known !== this.knownEpoch) this.state.dataLost('the calls epoch in Redis changed');
        return inEpoch();
      });
    }
    if (taken !== undefined && taken !== 'stale') {
      if (taken) this.own.hold(clientKey, slotId, holdUntil);
      return taken;
    }
    // Same rule as the rate limits: Redis down means counting here (with the slots this replica holds), never unlimited.
    const local = await this.own.reserve(clientKey, slotId, max, now, holdUntil);
    if (local) this.unshared.add(slotId);
    return local;
  }

  async release(clientKey: string, slotId: string): Promise<void> {
    await this.own.release(clientKey, slotId);
    if (this.unshared.delete(slotId)) return;
    const released = await this.onShared(() => this.shared.release(clientKey, slotId).then(() => true));
    if (!released) this.removals.set(slotId, { id: slotId, clientKey });
  }

  async activate(slotId: string, call: TrackedCall): Promise<void> {
    // Redis first: a copy without its Redis record would look ended elsewhere to prune().
    const slotShared = !this.unshared.delete(slotId);
    const shared = slotShared ? await this.onShared(() => this.shared.activate(slotId, call).then(() => true)) : undefined;
    if (!shared) {
      this.unshared.add(call.callId);
      // The pending slot Redis holds would otherwise count until it expires.
      if (slotShared) this.removals.set(slotId, { id: slotId, clientKey: call.clientKey });
    }
    await this.own.activate(slotId, call);
  }

  async get(callId: string): Promise<TrackedCall | undefined> {
    const known = this.knownEpoch;
    const shared = this.unshared.has(callId) ? undefined : await this.onShared(() => this.shared.getInEpoch(callId));
    if (shared?.call) return shared.call;
    const mine = await this.own.get(callId);
    if (shared && mine && shared.epoch === known) {
      // Redis answers, has lost nothing, and has no such call: another replica ended it.
      await this.own.finish(mine);
      return undefined;
    }
    // Redis silent, or it lost its data (this replica puts the call back): what this replica holds.
    return mine;
  }

  async claim(callId: string, now: number, leaseUntil: number): Promise<boolean> {
    const answer = this.unshared.has(callId) ? undefined : await this.onShared(() => this.shared.claimOrMissing(callId, now, leaseUntil));
    if (answer === 'held') return false;
    // The claim is mirrored here, so this replica does not hang the call up from its copy as well.
    const local = await this.own.claim(callId, now, leaseUntil);
    return answer === 'claimed' || local;
  }

  async claimDue(now: number, leaseUntil: number, limit: number): Promise<TrackedCall[]> {
    if (!this.state.shared) {
      // Still try Redis once a round: a frozen Redis keeps its socket, so no event says it is back.
      if (this.redis.status === 'ready') await this.onShared(() => this.shared.nextDue(), true);
      return this.own.claimDue(now, leaseUntil, limit);
    }
    const claimed = await this.onShared(() => this.shared.claimDue(now, leaseUntil, limit));
    if (claimed === undefined) return this.own.claimDue(now, leaseUntil, limit);
    for (const call of claimed) await this.own.claim(call.callId, now, leaseUntil);
    await this.prune();
    const mine = await this.own.claimDue(now, leaseUntil, limit, (id) => this.unshared.has(id));
    return [...claimed, ...mine];
  }

  async retryAt(callId: string, at: number, attempts: number): Promise<void> {
    await this.own.retryAt(callId, at, attempts);
    if (!this.unshared.has(callId)) await this.onShared(() => this.shared.retryAt(callId, at, attempts));
  }

  async finish(call: TrackedCall): Promise<void> {
    await this.own.finish(call);
    if (this.unshared.delete(call.callId)) return;
    if ((await this.onShared(() => this.shared.finish(call).then(() => true))) === undefined) {
      this.removals.set(call.callId, { id: call.callId, clientKey: call.clientKey });
    }
  }

  async nextDue(): Promise<number | undefined> {
    if (!this.state.shared) return this.own.nextDue();
    const dues = [await this.own.nextDue((id) => this.unshared.has(id)), await this.onShared(() => this.shared.nextDue())];
    const known = dues.filter((due): due is number => due !== undefined);
    return known.length > 0 ? Math.min(...known) : undefined;
  }

  async activeCount(): Promise<number> {
    const shared = this.state.shared ? await this.onShared(() => this.shared.activeCount()) : undefined;
    if (shared === undefined) return this.own.activeCount();
    return shared + [...this.unshared].filter((id) => this.own.has(id)).length;
  }

  async activeCallsOf(clientKeys: readonly string[], now: number): Promise<Map<string, number>> {
    const shared = this.state.shared ? await this.onShared(() => this.shared.activeCallsOf(clientKeys, now)) : undefined;
    return shared ?? this.own.activeCallsOf(clientKeys, now);
  }

  async localOnlyCount(): Promise<number> {
    return [...this.unshared].filter((id) => this.own.has(id)).length;
  }

  /**
   * Runs a Redis command while Redis is (or may be) answering: undefined when it is not, or the
   * command failed (the state then switches to fallback). `probe`: try even in fallback.
   */
  private async onShared<T>(command: () => Promise<T>, probe = false): Promise<T | undefined> {
    if (this.redis.status !== 'ready' || (!this.state.shared && !probe)) return undefined;
    try {
      const answer = await command();
      this.state.redisUp();
      return answer;
    } catch (error) {
      this.state.redisDown(error instanceof Error ? error.message : String(error));
      return undefined;
    }
  }

  private sawEpoch(epoch: string): void {
    const known = this.knownEpoch;
    this.knownEpoch = epoch;
    if (known !== undefined && known !== epoch) this.state.dataLost('the calls epoch in Redis changed');
  }

  /** Drops from the copy the calls Redis no longer has though its data was not lost: ended elsewhere. */
  private async prune(): Promise<void> {
    if (performance.now() - this.prunedAt < PRUNE_EVERY_MS) return;
    this.prunedAt = performance.now();
    const ids = this.own.callIds().filter((id) => !this.unshared.has(id));
    if (ids.length === 0) return;
    const epoch = this.knownEpoch;
    const gone = await this.onShared(() => this.shared.missing(ids));
    if (!gone || this.knownEpoch !== epoch) return;
    for (const id of gone) {
      const call = await this.own.get(id);
      if (call) await this.own.finish(call);
    }
  }

  /** Puts back into Redis everything this replica holds (a restore task of the shared state). */
  private async restore(): Promise<Record<string, number>> {
    const { calls, slots } = this.own.snapshot();
    const removals = [...this.removals.values()];
    this.knownEpoch = await this.shared.restore(calls, slots, removals, this.now());
    for (const removal of removals) if (this.removals.get(removal.id) === removal) this.removals.delete(removal.id);
    for (const { callId } of calls) this.unshared.delete(callId);
    for (const { slotId } of slots) this.unshared.delete(slotId);
    // Ended here while the script ran: the script may have put them back.
    const endedMeanwhile = calls.filter((c) => !this.own.has(c.callId));
    if (endedMeanwhile.length > 0) {
      await this.shared.restore([], [], endedMeanwhile.map((c) => ({ id: c.callId, clientKey: c.clientKey })), this.now());
    }
    return { calls_restored: calls.length, slots_restored: slots.length, ended_removed: removals.length };
  }
}
