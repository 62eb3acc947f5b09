import { randomUUID } from 'node:crypto';
import type { RedisClient } from '../redis.js';

/** A slot taken while OpenAI is asked for the call: not yet a call. */
export const PENDING_PREFIX = 'pending:';

/** A relayed call the service must end: who holds it and when it must be over (ms since the epoch). */
export interface TrackedCall {
  callId: string;
  clientKey: string;
  startedAt: number;
  endsAt: number;
  /** Failed hangups so far (a due call whose hangup failed is retried later). */
  attempts: number;
}

/**
 * Where call deadlines and per-client slots live. A slot is taken before OpenAI is asked (so
 * concurrent requests cannot all slip under the limit), then becomes the call or is given back.
 * "Claiming" a call hands it to one caller for `leaseUntil`: the one replica that hangs it up.
 */
export interface CallStore {
  /** Takes one of the client's `max` slots until `holdUntil`; false when all are taken. */
  reserve(clientKey: string, slotId: string, max: number, now: number, holdUntil: number): Promise<boolean>;
  release(clientKey: string, slotId: string): Promise<void>;
  /** The reserved slot becomes the call: it holds the slot and is due at `call.endsAt`. */
  activate(slotId: string, call: TrackedCall): Promise<void>;
  get(callId: string): Promise<TrackedCall | undefined>;
  /** Claims one call unless another caller holds an unexpired claim on it. */
  claim(callId: string, now: number, leaseUntil: number): Promise<boolean>;
  /** Claims every call due by `now` (at most `limit`), each for exactly one caller. */
  claimDue(now: number, leaseUntil: number, limit: number): Promise<TrackedCall[]>;
  /** A claimed call whose hangup failed: due again at `at`. */
  retryAt(callId: string, at: number, attempts: number): Promise<void>;
  /** Forgets the call and frees its slot. */
  finish(call: TrackedCall): Promise<void>;
  /** When the next call is due (ms), if any. */
  nextDue(): Promise<number | undefined>;
  /** Calls not yet finished (across replicas for Redis). */
  activeCount(): Promise<number>;
  /** How many calls (not pending slots) each of these clients holds now: for the operator's report. */
  activeCallsOf(clientKeys: readonly string[], now: number): Promise<Map<string, number>>;
  /** Calls whose deadline only this process holds (lost if it stops now). */
  localOnlyCount(): Promise<number>;
}

/** What a replica holds, to put back into Redis: its calls (with their state) and pending slots. */
export interface HeldCall extends TrackedCall {
  dueAt: number;
  claimedUntil: number;
}
export interface HeldSlot {
  clientKey: string;
  slotId: string;
  holdUntil: number;
}

type MemoryEntry = HeldCall;

/**
 * One process's calls: lost on restart (see README, "Calls"). With Redis, the copy of what this
 * replica created, which serves while Redis does not answer and is put back when it returns.
 */
export class MemoryCallStore implements CallStore {
  private readonly calls = new Map<string, MemoryEntry>();
  /** clientKey -> slot id (a pending slot's id or a call id) -> held until (ms). */
  private readonly slots = new Map<string, Map<string, number>>();

  async reserve(clientKey: string, slotId: string, max: number, now: number, holdUntil: number): Promise<boolean> {
    const held = this.slots.get(clientKey) ?? new Map<string, number>();
    for (const [id, until] of held) if (until <= now) held.delete(id);
    if (held.size >= max) {
      if (held.size === 0) this.slots.delete(clientKey);
      return false;
    }
    held.set(slotId, holdUntil);
    this.slots.set(clientKey, held);
    return true;
  }

  /** Records a slot taken elsewhere (in Redis), whatever the count. */
  hold(clientKey: string, slotId: string, holdUntil: number): void {
    const held = this.slots.get(clientKey) ?? new Map<string, number>();
    held.set(slotId, holdUntil);
    this.slots.set(clientKey, held);
  }

  async release(clientKey: string, slotId: string): Promise<void> {
    const held = this.slots.get(clientKey);
    held?.delete(slotId);
    if (held?.size === 0) this.slots.delete(clientKey);
  }

  async activate(slotId: string, call: TrackedCall): Promise<void> {
    const held = this.slots.get(call.clientKey) ?? new Map<string, number>();
    held.delete(slotId);
    held.set(call.callId, call.endsAt);
    this.slots.set(call.clientKey, held);
    this.calls.set(call.callId, { ...call, dueAt: call.endsAt, claimedUntil: 0 });
  }

  async get(callId: string): Promise<TrackedCall | undefined> {
    const entry = this.calls.get(callId);
    return entry ? publicView(entry) : undefined;
  }

  async claim(callId: string, now: number, leaseUntil: number): Promise<boolean> {
    const entry = this.calls.get(callId);
    if (!entry || entry.claimedUntil > now) return false;
    entry.claimedUntil = leaseUntil;
    entry.dueAt = leaseUntil;
    return true;
  }

  /** `only`: the calls to consider (default all). */
  async claimDue(now: number, leaseUntil: number, limit: number, only?: (callId: string) => boolean): Promise<TrackedCall[]> {
    const due: TrackedCall[] = [];
    for (const entry of this.calls.values()) {
      if (due.length >= limit) break;
      if (entry.dueAt > now || (only && !only(entry.callId))) continue;
      entry.claimedUntil = leaseUntil;
      entry.dueAt = leaseUntil;
      due.push(publicView(entry));
    }
    return due;
  }

  async retryAt(callId: string, at: number, attempts: number): Promise<void> {
    const entry = this.calls.get(callId);
    if (!entry) return;
    entry.dueAt = at;
    entry.claimedUntil = 0;
    entry.attempts = attempts;
  }

  async finish(call: TrackedCall): Promise<void> {
    this.calls.delete(call.callId);
    await this.release(call.clientKey, call.callId);
  }

  /** `only`: the calls to consider (default all). */
  async nextDue(only?: (callId: string) => boolean): Promise<number | undefined> {
    let next: number | undefined;
    for (const entry of this.calls.values()) {
      if (only && !only(entry.callId)) continue;
      if (next === undefined || entry.dueAt < next) next = entry.dueAt;
    }
    return next;
  }

  async activeCount(): Promise<number> {
    return this.calls.size;
  }

  async activeCallsOf(clientKeys: readonly string[], now: number): Promise<Map<string, number>> {
    const counts = new Map<string, number>();
    for (const clientKey of clientKeys) {
      let held = 0;
      for (const [id, until] of this.slots.get(clientKey) ?? []) if (until > now && !id.startsWith(PENDING_PREFIX)) held += 1;
      if (held > 0) counts.set(clientKey, held);
    }
    return counts;
  }

  async localOnlyCount(): Promise<number> {
    return this.calls.size;
  }

  has(callId: string): boolean {
    return this.calls.has(callId);
  }

  callIds(): string[] {
    return [...this.calls.keys()];
  }

  /** Every call and pending slot held here, as they are now. */
  snapshot(): { calls: HeldCall[]; slots: HeldSlot[] } {
    const calls = [...this.calls.values()].map((entry) => ({ ...entry }));
    const slots: HeldSlot[] = [];
    for (const [clientKey, held] of this.slots) {
      for (const [slotId, holdUntil] of held) if (!this.calls.has(slotId)) slots.push({ clientKey, slotId, holdUntil });
    }
    return { calls, slots };
  }
}

function publicView(entry: MemoryEntry): TrackedCall {
  const { callId, clientKey, startedAt, endsAt, attempts } = entry;
  return { callId, clientKey, startedAt, endsAt, attempts };
}

/**
 * Every key of the calls shares the hash tag `{calls}`: one cluster slot, so each script and MULTI
 * below touches one slot, and keys a script builds from the prefix live on the node it runs on.
 * (Per-call tags would split the claim of a due call from its deadline index; see docs/redis.md.)
 */
export const CALLS_PREFIX = 'parker-calls:{calls}:';
const DEADLINES = `${CALLS_PREFIX}deadlines`;
/** A random id written when the calls' data is first found empty: a new one means it was lost. */
const EPOCH = `${CALLS_PREFIX}epoch`;
const callKey = (callId: string) => `${CALLS_PREFIX}call:${callId}`;
const slotsKey = (clientKey: string) => `${CALLS_PREFIX}client:${clientKey}`;
/** Records outlive OpenAI's 60-minute cap by a margin, so nothing is left behind in Redis for long. */
const RECORD_TTL_MS = 2 * 3600_000;
/** Calls put back per script run (a script blocks Redis while it runs). */
const RESTORE_BATCH = 200;

// Reads the epoch, writing ARGV[1] when there is none. Prepended to the scripts that report it.
const READ_EPOCH = `
local function epoch(key, fresh)
  local current = redis.call('GET', key)
  if not current then
    redis.call('SET', key, fresh)
    current = fresh
  end
  return current
end
`;

// KEYS: slots, epoch. ARGV: now, max, slotId, holdUntil, ttl, the caller's epoch ('' = any).
// Drops expired slots, then takes one if free: 1, 0 when none is, -1 when the epoch is not the
// caller's (Redis lost what the caller put there: it must put it back before it counts).
const RESERVE = `
if ARGV[6] ~= '' and redis.call('GET', KEYS[2]) ~= ARGV[6] then return -1 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1`;

// KEYS: deadlines, call. ARGV: callId, now, leaseUntil. Claims one call unless a live claim holds
// it: 1 claimed, 0 held by another caller, -1 no such call here.
const CLAIM = `
if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return -1 end
local claimed = redis.call('HGET', KEYS[2], 'claimed')
if claimed == '1' and tonumber(score) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[2], 'claimed', '1')
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1`;

// KEYS: deadlines, epoch. ARGV: now, leaseUntil, limit, call key prefix, fresh epoch. One script, so
// each due call goes to one replica. Returns the epoch, then five fields per call.
const CLAIM_DUE = `${READ_EPOCH}
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = { epoch(KEYS[2], ARGV[5]) }
for _, id in ipairs(due) do
  redis.call('ZADD', KEYS[1], ARGV[2], id)
  local key = ARGV[4] .. id
  redis.call('HSET', key, 'claimed', '1')
  out[#out + 1] = id
  out[#out + 1] = redis.call('HGET', key, 'client') or ''
  out[#out + 1] = redis.call('HGET', key, 'started') or '0'
  out[#out + 1] = redis.call('HGET', key, 'ends') or '0'
  out[#out + 1] = redis.call('HGET', key, 'attempts') or '0'
end
return out`;

// KEYS: call, epoch. ARGV: fresh epoch. Returns the epoch, then the call's fields (name, value, ...).
const GET = `${READ_EPOCH}
local out = { epoch(KEYS[2], ARGV[1]) }
for _, field in ipairs(redis.call('HGETALL', KEYS[1])) do out[#out + 1] = field end
return out`;

// KEYS: deadlines, epoch. ARGV: fresh epoch, call ids. Returns the epoch, then the ids Redis no
// longer has (ended by another replica, or lost).
const MISSING = `${READ_EPOCH}
local out = { epoch(KEYS[2], ARGV[1]) }
for i = 2, #ARGV do
  if not redis.call('ZSCORE', KEYS[1], ARGV[i]) then out[#out + 1] = ARGV[i] end
end
return out`;

// KEYS: deadlines, epoch. ARGV: fresh epoch, prefix, record ttl, #calls, #slots, #removals, then
// per call: id, client, started, ends, attempts, dueAt, claimed; per slot: client, slotId, holdUntil;
// per removal: id, client. Puts back what a replica holds: a call Redis still has keeps its state
// (e.g. another replica's claim); what the replica ended meanwhile is removed. Returns the epoch.
const RESTORE = `${READ_EPOCH}
local prefix, ttl = ARGV[2], ARGV[3]
local i = 7
for _ = 1, tonumber(ARGV[4]) do
  local id, client = ARGV[i], ARGV[i + 1]
  local key = prefix .. 'call:' .. id
  if redis.call('EXISTS', key) == 0 then
    redis.call('HSET', key, 'client', client, 'started', ARGV[i + 2], 'ends', ARGV[i + 3], 'attempts', ARGV[i + 4], 'claimed', ARGV[i + 6])
    redis.call('PEXPIRE', key, ttl)
    redis.call('ZADD', KEYS[1], ARGV[i + 5], id)
  else
    redis.call('ZADD', KEYS[1], 'NX', ARGV[i + 5], id)
  end
  local slots = prefix .. 'client:' .. client
  redis.call('ZADD', slots, 'NX', ARGV[i + 3], id)
  redis.call('PEXPIRE', slots, ttl)
  i = i + 7
end
for _ = 1, tonumber(ARGV[5]) do
  local slots = prefix .. 'client:' .. ARGV[i]
  redis.call('ZADD', slots, 'NX', ARGV[i + 2], ARGV[i + 1])
  redis.call('PEXPIRE', slots, ttl)
  i = i + 3
end
for _ = 1, tonumber(ARGV[6]) do
  redis.call('ZREM', KEYS[1], ARGV[i])
  redis.call('DEL', prefix .. 'call:' .. ARGV[i])
  redis.call('ZREM', prefix .. 'client:' .. ARGV[i + 1], ARGV[i])
  i = i + 2
end
return epoch(KEYS[2], ARGV[1])`;

const freshEpoch = () => randomUUID();

/** A call the replica ended (or a slot it gave back) while Redis could not hear it. */
export interface Removal {
  id: string;
  clientKey: string;
}

/**
 * Deadlines in a sorted set (score = due ms), one hash per call, one sorted set of slots per
 * client, and the epoch. Scripts that read the epoch pass it to `onEpoch` (a new one means lost data).
 */
export class RedisCallStore implements CallStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly onEpoch: (epoch: string) => void = () => undefined,
  ) {}

  async reserve(clientKey: string, slotId: string, max: number, now: number, holdUntil: number): Promise<boolean> {
    return (await this.reserveInEpoch('', clientKey, slotId, max, now, holdUntil)) === true;
  }

  /** Like reserve(), unless Redis's epoch is not `epoch`: then 'stale', and nothing is taken. */
  async reserveInEpoch(epoch: string, clientKey: string, slotId: string, max: number, now: number, holdUntil: number): Promise<boolean | 'stale'> {
    const taken = await this.redis.eval(RESERVE, 2, slotsKey(clientKey), EPOCH, now, max, slotId, holdUntil, RECORD_TTL_MS, epoch);
    return taken === -1 ? 'stale' : taken === 1;
  }

  async release(clientKey: string, slotId: string): Promise<void> {
    await this.redis.zrem(slotsKey(clientKey), slotId);
  }

  async activate(slotId: string, call: TrackedCall): Promise<void> {
    await this.redis
      .multi()
      .zrem(slotsKey(call.clientKey), slotId)
      .zadd(slotsKey(call.clientKey), call.endsAt, call.callId)
      .hset(callKey(call.callId), {
        client: call.clientKey,
        started: call.startedAt,
        ends: call.endsAt,
        attempts: call.attempts,
        claimed: '0',
      })
      .pexpire(callKey(call.callId), RECORD_TTL_MS)
      .zadd(DEADLINES, call.endsAt, call.callId)
      .exec();
  }

  async get(callId: string): Promise<TrackedCall | undefined> {
    return (await this.getInEpoch(callId)).call;
  }

  /** The call, if Redis has it, and the epoch it answered in. */
  async getInEpoch(callId: string): Promise<{ epoch: string; call: TrackedCall | undefined }> {
    const [epoch, ...flat] = (await this.redis.eval(GET, 2, callKey(callId), EPOCH, freshEpoch())) as string[];
    this.onEpoch(epoch as string);
    const fields = new Map<string, string>();
    for (let i = 0; i + 1 < flat.length; i += 2) fields.set(flat[i] as string, flat[i + 1] as string);
    const client = fields.get('client');
    if (!client) return { epoch: epoch as string, call: undefined };
    return {
      epoch: epoch as string,
      call: {
        callId,
        clientKey: client,
        startedAt: Number(fields.get('started')),
        endsAt: Number(fields.get('ends')),
        attempts: Number(fields.get('attempts') ?? 0),
      },
    };
  }

  async claim(callId: string, now: number, leaseUntil: number): Promise<boolean> {
    return (await this.claimOrMissing(callId, now, leaseUntil)) === 'claimed';
  }

  /** Like claim(), and says when Redis has no such call. */
  async claimOrMissing(callId: string, now: number, leaseUntil: number): Promise<'claimed' | 'held' | 'missing'> {
    const answer = await this.redis.eval(CLAIM, 2, DEADLINES, callKey(callId), callId, now, leaseUntil);
    return answer === 1 ? 'claimed' : answer === 0 ? 'held' : 'missing';
  }

  async claimDue(now: number, leaseUntil: number, limit: number): Promise<TrackedCall[]> {
    const [epoch, ...flat] = (await this.redis.eval(CLAIM_DUE, 2, DEADLINES, EPOCH, now, leaseUntil, limit, `${CALLS_PREFIX}call:`, freshEpoch())) as string[];
    if (epoch !== undefined) this.onEpoch(epoch);
    const calls: TrackedCall[] = [];
    for (let i = 0; i + 4 < flat.length; i += 5) {
      calls.push({
        callId: flat[i] as string,
        clientKey: flat[i + 1] as string,
        startedAt: Number(flat[i + 2]),
        endsAt: Number(flat[i + 3]),
        attempts: Number(flat[i + 4]),
      });
    }
    return calls;
  }

  /** Of these call ids, the ones Redis no longer has. */
  async missing(callIds: readonly string[]): Promise<string[]> {
    const [epoch, ...gone] = (await this.redis.eval(MISSING, 2, DEADLINES, EPOCH, freshEpoch(), ...callIds)) as string[];
    if (epoch !== undefined) this.onEpoch(epoch);
    return gone;
  }

  /** Puts back what a replica holds (see RESTORE); returns the epoch Redis has now. */
  async restore(calls: readonly HeldCall[], slots: readonly HeldSlot[], removals: readonly Removal[], now: number): Promise<string> {
    const batches = Math.max(1, Math.ceil(Math.max(calls.length, slots.length, removals.length) / RESTORE_BATCH));
    const epochs: string[] = [];
    for (let from = 0; epochs.length < batches; from += RESTORE_BATCH) {
      const batch = { calls: calls.slice(from, from + RESTORE_BATCH), slots: slots.slice(from, from + RESTORE_BATCH), removals: removals.slice(from, from + RESTORE_BATCH) };
      const args: (string | number)[] = [freshEpoch(), CALLS_PREFIX, RECORD_TTL_MS, batch.calls.length, batch.slots.length, batch.removals.length];
      for (const c of batch.calls) {
        args.push(c.callId, c.clientKey, c.startedAt, c.endsAt, c.attempts, c.dueAt, c.claimedUntil > now ? '1' : '0');
      }
      for (const s of batch.slots) args.push(s.clientKey, s.slotId, s.holdUntil);
      for (const r of batch.removals) args.push(r.id, r.clientKey);
      epochs.push(String(await this.redis.eval(RESTORE, 2, DEADLINES, EPOCH, ...args)));
    }
    return epochs[epochs.length - 1] as string;
  }

  async retryAt(callId: string, at: number, attempts: number): Promise<void> {
    await this.redis
      .multi()
      .hset(callKey(callId), { claimed: '0', attempts: String(attempts) })
      .zadd(DEADLINES, at, callId)
      .exec();
  }

  async finish(call: TrackedCall): Promise<void> {
    await this.redis
      .multi()
      .zrem(DEADLINES, call.callId)
      .zrem(slotsKey(call.clientKey), call.callId)
      .del(callKey(call.callId))
      .exec();
  }

  async nextDue(): Promise<number | undefined> {
    const first = await this.redis.zrange(DEADLINES, '0', '0', 'WITHSCORES');
    return first[1] !== undefined ? Number(first[1]) : undefined;
  }

  async activeCount(): Promise<number> {
    return this.redis.zcard(DEADLINES);
  }

  async activeCallsOf(clientKeys: readonly string[], now: number): Promise<Map<string, number>> {
    // One read per client, each in its own key (and slot): the top clients of the report at most.
    const held = await Promise.all(clientKeys.map((clientKey) => this.redis.zrangebyscore(slotsKey(clientKey), `(${now}`, '+inf')));
    const counts = new Map<string, number>();
    clientKeys.forEach((clientKey, i) => {
      const calls = (held[i] ?? []).filter((id) => !id.startsWith(PENDING_PREFIX)).length;
      if (calls > 0) counts.set(clientKey, calls);
    });
    return counts;
  }

  async localOnlyCount(): Promise<number> {
    return 0;
  }
}
