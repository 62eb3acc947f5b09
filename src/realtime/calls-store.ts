import type { Redis } from 'ioredis';

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
  readonly kind: 'memory' | 'redis';
  /** Whether the store answers right now (Redis connected). */
  available(): boolean;
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
}

interface MemoryEntry extends TrackedCall {
  dueAt: number;
  claimedUntil: number;
}

/** One process's calls: lost on restart (see README, "Calls"). */
export class MemoryCallStore implements CallStore {
  readonly kind = 'memory';
  private readonly calls = new Map<string, MemoryEntry>();
  /** clientKey -> slot id (a pending slot's id or a call id) -> held until (ms). */
  private readonly slots = new Map<string, Map<string, number>>();

  available(): boolean {
    return true;
  }

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

  async claimDue(now: number, leaseUntil: number, limit: number): Promise<TrackedCall[]> {
    const due: TrackedCall[] = [];
    for (const entry of this.calls.values()) {
      if (due.length >= limit) break;
      if (entry.dueAt > now) continue;
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

  async nextDue(): Promise<number | undefined> {
    let next: number | undefined;
    for (const entry of this.calls.values()) if (next === undefined || entry.dueAt < next) next = entry.dueAt;
    return next;
  }

  async activeCount(): Promise<number> {
    return this.calls.size;
  }
}

function publicView(entry: MemoryEntry): TrackedCall {
  const { callId, clientKey, startedAt, endsAt, attempts } = entry;
  return { callId, clientKey, startedAt, endsAt, attempts };
}

const PREFIX = 'parker-calls:';
const DEADLINES = `${PREFIX}deadlines`;
const callKey = (callId: string) => `${PREFIX}call:${callId}`;
const slotsKey = (clientKey: string) => `${PREFIX}client:${clientKey}`;
/** Records outlive OpenAI's 60-minute cap by a margin, so nothing is left behind in Redis for long. */
const RECORD_TTL_MS = 2 * 3600_000;

// KEYS: slots. ARGV: now, max, slotId, holdUntil, ttl. Drops expired slots, then takes one if free.
const RESERVE = `
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1`;

// KEYS: deadlines, call. ARGV: callId, now, leaseUntil. Claims one call unless a live claim holds it.
const CLAIM = `
if redis.call('EXISTS', KEYS[2]) == 0 then return 0 end
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score then return 0 end
local claimed = redis.call('HGET', KEYS[2], 'claimed')
if claimed == '1' and tonumber(score) > tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[2], 'claimed', '1')
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1`;

// KEYS: deadlines. ARGV: now, leaseUntil, limit, prefix. One script, so each due call goes to one replica.
const CLAIM_DUE = `
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
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

/** Deadlines in a sorted set (score = due ms), one hash per call, one sorted set of slots per client. */
export class RedisCallStore implements CallStore {
  readonly kind = 'redis';

  constructor(private readonly redis: Redis) {}

  available(): boolean {
    return this.redis.status === 'ready';
  }

  async reserve(clientKey: string, slotId: string, max: number, now: number, holdUntil: number): Promise<boolean> {
    const taken = await this.redis.eval(RESERVE, 1, slotsKey(clientKey), now, max, slotId, holdUntil, RECORD_TTL_MS);
    return taken === 1;
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
    const fields = await this.redis.hgetall(callKey(callId));
    if (!fields.client) return undefined;
    return {
      callId,
      clientKey: fields.client,
      startedAt: Number(fields.started),
      endsAt: Number(fields.ends),
      attempts: Number(fields.attempts ?? 0),
    };
  }

  async claim(callId: string, now: number, leaseUntil: number): Promise<boolean> {
    return (await this.redis.eval(CLAIM, 2, DEADLINES, callKey(callId), callId, now, leaseUntil)) === 1;
  }

  async claimDue(now: number, leaseUntil: number, limit: number): Promise<TrackedCall[]> {
    const flat = (await this.redis.eval(CLAIM_DUE, 1, DEADLINES, now, leaseUntil, limit, `${PREFIX}call:`)) as string[];
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
}
