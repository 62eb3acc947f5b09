import type { FastifyBaseLogger } from 'fastify';
import type { Cluster, Redis } from 'ioredis';
import {
  addTo,
  DAY_MS,
  HourlyHistory,
  lastHours,
  LEDGER_CLIENTS,
  refusalOf,
  usageOf,
  WindowBook,
  type Admission,
  type AdmitLimits,
  type Amount,
  type HourUsage,
  type LedgerOptions,
  type LedgerSnapshot,
  type LedgerStore,
  type UsageLedger,
  type WindowEntry,
  type WindowUsage,
} from './ledger.js';

// Every key is hash-tagged, and every script and transaction touches keys of one tag only, so each
// runs on one Redis Cluster slot: a client's window alone ({c:<client>}), or the global ones ({g}).
const clientKeyOf = (client: string) => `parker-usage:{c:${client}}:day`;
const GLOBAL_KEY = 'parker-usage:{g}:day';
const TOP_KEY = 'parker-usage:{g}:top';
const TOP_EXPIRY_KEY = 'parker-usage:{g}:top-expiry';
const hourKeyOf = (hour: number) => `parker-usage:{g}:hour:${hour}`;
const HISTORY_TTL_MS = 25 * 3_600_000;
/** The top clients Redis keeps (the report shows 100). */
const TOP_KEPT = 1_000;

// KEYS: window. ARGV: max mints (0 = none), spend cap (-1 = none), mints to add, spend to add, window
// ms, then what this replica knows the window holds (mints, spend, ms left). Checks and adds in one
// step, so concurrent requests on any replica cannot all slip under a limit. A window Redis lost
// (evicted, flushed, a restart) while this replica knew it starts again from what it knew.
const ADMIT = `
if redis.call('EXISTS', KEYS[1]) == 0 and (tonumber(ARGV[6]) > 0 or tonumber(ARGV[7]) > 0) then
  redis.call('HSET', KEYS[1], 'm', ARGV[6], 's', ARGV[7])
  redis.call('PEXPIRE', KEYS[1], ARGV[8])
end
local m = tonumber(redis.call('HGET', KEYS[1], 'm') or '0')
local s = tonumber(redis.call('HGET', KEYS[1], 's') or '0')
local code = 0
if tonumber(ARGV[1]) > 0 and m >= tonumber(ARGV[1]) then code = 1
elseif tonumber(ARGV[2]) >= 0 and s >= tonumber(ARGV[2]) then code = 2
else
  m = redis.call('HINCRBY', KEYS[1], 'm', ARGV[3])
  s = redis.call('HINCRBY', KEYS[1], 's', ARGV[4])
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 and code == 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  ttl = tonumber(ARGV[5])
end
return {code, m, s, ttl}`;

// KEYS: window. ARGV: mints to add, spend to add, floor of mints, floor of spend, window ms left.
// Hands Redis what this replica counted without it; the floor (what this replica knows the window
// held) restores a window Redis lost in a restart. Counts only go up to the truth, never below it.
const MERGE = `
local m = redis.call('HINCRBY', KEYS[1], 'm', ARGV[1])
local s = redis.call('HINCRBY', KEYS[1], 's', ARGV[2])
if m < tonumber(ARGV[3]) then m = tonumber(ARGV[3]); redis.call('HSET', KEYS[1], 'm', ARGV[3]) end
if s < tonumber(ARGV[4]) then s = tonumber(ARGV[4]); redis.call('HSET', KEYS[1], 's', ARGV[4]) end
local ttl = redis.call('PTTL', KEYS[1])
if ttl < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
  ttl = tonumber(ARGV[5])
end
return {m, s, ttl}`;

// KEYS: window.
const READ = `
return {tonumber(redis.call('HGET', KEYS[1], 'm') or '0'), tonumber(redis.call('HGET', KEYS[1], 's') or '0'), redis.call('PTTL', KEYS[1])}`;

// KEYS: top, top-expiry. ARGV: now, kept, ttl, then (member, score, window end) triples. Drops the
// members whose window ended, raises the others' scores, keeps the best TOP_KEPT.
const TOP_UPDATE = `
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, member in ipairs(expired) do
  redis.call('ZREM', KEYS[1], member)
  redis.call('ZREM', KEYS[2], member)
end
for i = 4, #ARGV, 3 do
  redis.call('ZADD', KEYS[1], 'GT', ARGV[i + 1], ARGV[i])
  redis.call('ZADD', KEYS[2], ARGV[i + 2], ARGV[i])
end
local extra = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[2])
if extra > 0 then
  for _, member in ipairs(redis.call('ZRANGE', KEYS[1], 0, extra - 1)) do
    redis.call('ZREM', KEYS[1], member)
    redis.call('ZREM', KEYS[2], member)
  end
end
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
return redis.call('ZREVRANGE', KEYS[1], 0, 99)`;

type Runner = (keys: readonly string[], args: readonly (string | number)[]) => Promise<unknown>;

/** A Lua script sent once and run by its SHA after (ioredis falls back to EVAL after a Redis restart). */
function defineScript(redis: Redis | Cluster, name: string, lua: string, keys: number): Runner {
  redis.defineCommand(name, { lua, numberOfKeys: keys });
  const command = (redis as unknown as Record<string, (...args: (string | number)[]) => Promise<unknown>>)[name];
  if (!command) throw new Error(`ioredis did not define ${name}`);
  return (k, a) => command.call(redis, ...k, ...a);
}

/** Spend and mints rank in one sorted-set score: micro-dollars in the high bits, mints in the low 21. */
function topScore(usage: WindowUsage): number {
  const micro = Math.min(Math.floor(usage.spendNano / 1000), 2 ** 32 - 1);
  return micro * 2 ** 21 + Math.min(usage.mints, 2 ** 21 - 1);
}

const FLUSH_MS = 2_000;
/** Merges in flight at once while catching Redis up. */
const MERGE_BATCH = 200;
/** After a failed command, commands skip Redis this long (a frozen Redis would cost every request its timeout). */
const RETRY_MS = 1_000;

interface Side {
  key: string;
  entry: (now: number, open: boolean) => WindowEntry | undefined;
}

interface SideResult {
  refusal: 'quota' | 'spend' | 'budget' | 'full' | undefined;
  usage: WindowUsage;
  /** Whether the amount was added (and must be given back if the other side refuses). */
  added: boolean;
}

/**
 * The windows in Redis, shared by every replica, with a copy of what this replica saw in-process.
 * While Redis does not answer, the copy counts on (from the last totals Redis gave, so no cap is
 * lifted for a client this replica knew), flagged as 'fallback'. When Redis answers again, every
 * window of the copy is merged back (what was counted meanwhile, floored at the copy's totals, so a
 * Redis that restarted empty gets its windows back) before it is checked in Redis again.
 * Limits that are off cost no round trip: their counts are merged in the background every 2 s.
 */
export class RedisLedger implements UsageLedger {
  private readonly book: WindowBook;
  private readonly windowMs: number;
  private global: WindowEntry | undefined;
  /** Counted here, not yet in Redis. */
  private readonly pendingHours = new HourlyHistory();
  /** This replica's own history: the report while Redis is away. */
  private readonly localHours = new HourlyHistory();
  /** Clients whose window holds counts Redis lacks, or predates the current connection. */
  private readonly dirty = new Set<string>();
  private globalDirty = false;
  /** Clients whose totals changed since the top set was updated. */
  private readonly touched = new Set<string>();
  private readonly log: FastifyBaseLogger | undefined;
  private readonly admitScript: Runner;
  private readonly mergeScript: Runner;
  private readonly readScript: Runner;
  private readonly topScript: Runner;
  /** Bumped each time Redis answers after it did not: windows of older generations are merged first. */
  private generation = 0;
  private down = true;
  private retryAt = 0;
  private flushing: Promise<void> | undefined;
  private readonly timer: NodeJS.Timeout;
  private readonly clock: () => number;
  private closed = false;

  constructor(
    private readonly redis: Redis | Cluster,
    options: LedgerOptions = {},
  ) {
    this.windowMs = options.windowMs ?? DAY_MS;
    this.log = options.log;
    this.clock = options.clock ?? Date.now;
    this.book = new WindowBook(options.capacity ?? LEDGER_CLIENTS, this.windowMs, options.log, 'redis');
    this.admitScript = defineScript(redis, 'parkerLedgerAdmit', ADMIT, 1);
    this.mergeScript = defineScript(redis, 'parkerLedgerMerge', MERGE, 1);
    this.readScript = defineScript(redis, 'parkerLedgerRead', READ, 1);
    this.topScript = defineScript(redis, 'parkerLedgerTop', TOP_UPDATE, 2);
    redis.on('ready', () => void this.flush());
    redis.on('close', () => this.markDown('connection closed'));
    redis.on('error', (error: Error) => this.markDown(error.message));
    this.timer = setInterval(() => void this.flush(), FLUSH_MS).unref();
  }

  get store(): LedgerStore {
    return this.down ? 'fallback' : 'redis';
  }

  get clientCount(): number {
    return this.book.size;
  }

  private available(): boolean {
    return this.redis.status === 'ready' && performance.now() >= this.retryAt;
  }

  private markDown(cause: string): void {
    this.retryAt = performance.now() + RETRY_MS;
    if (this.down || this.closed) return;
    this.down = true;
    this.log?.warn({ cause }, 'usage ledger: Redis unreachable, counting locally until it returns (caps still hold)');
  }

  private markUp(): void {
    if (!this.down) return;
    this.down = false;
    this.generation++;
    // Whatever this replica knows may be missing from Redis (counted meanwhile, or lost in a restart).
    const now = this.clock();
    for (const [key] of this.book.live(now)) this.dirty.add(key);
    this.globalDirty = this.global !== undefined;
    this.log?.info('usage ledger: counting in Redis');
  }

  /** Runs a Redis command; undefined (and fallback) when Redis is away or fails. */
  private async attempt<T>(command: () => Promise<T>): Promise<T | undefined> {
    if (!this.available()) return undefined;
    try {
      const result = await command();
      this.markUp();
      return result;
    } catch (error) {
      this.markDown((error as Error).message);
      return undefined;
    }
  }

  private clientSide(client: string): Side {
    return { key: clientKeyOf(client), entry: (now, open) => (open ? this.book.open(client, now) : this.book.get(client, now)) };
  }

  private globalSide(): Side {
    return {
      key: GLOBAL_KEY,
      entry: (now, open) => {
        if (this.global && this.global.resetAt <= now) this.global = undefined;
        if (!this.global && open) {
          this.global = { mints: 0, spendNano: 0, resetAt: now + this.windowMs, pendingMints: 0, pendingSpendNano: 0, generation: 0 };
        }
        return this.global;
      },
    };
  }

  private markDirty(client: string | undefined): void {
    if (client === undefined) this.globalDirty = true;
    else {
      this.dirty.add(client);
      this.touched.add(client);
    }
  }

  /**
   * Stores what Redis answered in the copy (keeping what Redis has not been given yet). A client new
   * to the copy gets a window there when there is room (`force`: even past it, for a call's charge);
   * without room it is counted in Redis only, and only Redis protects it while Redis is away.
   */
  private remember(side: Side, client: string | undefined, reply: number[], now: number, open: 'no' | 'room' | 'force'): WindowUsage {
    const [mints = 0, spendNano = 0, ttl = 0] = reply;
    const resetAt = now + (ttl > 0 ? ttl : this.windowMs);
    let entry = side.entry(now, false);
    if (!entry && open !== 'no') {
      entry = client === undefined ? side.entry(now, true) : this.book.open(client, now, resetAt, open === 'force');
    }
    if (!entry) return { mints, spendNano, spendUsd: spendNano / 1e9, resetAt };
    entry.mints = mints + entry.pendingMints;
    entry.spendNano = spendNano + entry.pendingSpendNano;
    entry.resetAt = resetAt;
    entry.generation = this.generation;
    if (client !== undefined) this.touched.add(client);
    return usageOf(entry, now, this.windowMs);
  }

  /** Hands Redis this window's local counts if it lacks them; false when Redis is away. One merge per window at a time. */
  private async catchUp(side: Side, client: string | undefined, now: number): Promise<boolean> {
    const entry = side.entry(now, false);
    if (!entry) return true;
    while (entry.merging) if (!(await entry.merging)) return false;
    if (entry.generation === this.generation && entry.pendingMints === 0 && entry.pendingSpendNano === 0) {
      if (client === undefined) this.globalDirty = false;
      else this.dirty.delete(client);
      return true;
    }
    entry.merging = this.merge(side, client, entry, now).finally(() => {
      entry.merging = undefined;
    });
    return entry.merging;
  }

  private async merge(side: Side, client: string | undefined, entry: WindowEntry, now: number): Promise<boolean> {
    const { pendingMints, pendingSpendNano } = entry;
    const args = [pendingMints, pendingSpendNano, entry.mints, entry.spendNano, Math.max(1, entry.resetAt - now)];
    const reply = await this.attempt(() => this.mergeScript([side.key], args) as Promise<number[]>);
    if (!reply) return false;
    entry.pendingMints -= pendingMints;
    entry.pendingSpendNano -= pendingSpendNano;
    this.remember(side, client, reply.map(Number), now, 'no');
    if (entry.pendingMints === 0 && entry.pendingSpendNano === 0) {
      if (client === undefined) this.globalDirty = false;
      else this.dirty.delete(client);
    }
    return true;
  }

  /** What this replica knows Redis should hold of a window: mints, spend, ms left. */
  private known(side: Side, now: number): [number, number, number] {
    const entry = side.entry(now, false);
    if (!entry) return [0, 0, this.windowMs];
    return [entry.mints - entry.pendingMints, entry.spendNano - entry.pendingSpendNano, Math.max(1, entry.resetAt - now)];
  }

  /** One side of an admission: checked and added in Redis when it enforces a limit, else counted here. */
  private async admitSide(
    side: Side,
    client: string | undefined,
    amount: Amount,
    maxMints: number | undefined,
    capNano: number | undefined,
    now: number,
  ): Promise<SideResult> {
    const enforced = (maxMints !== undefined && maxMints > 0) || capNano !== undefined;
    if (enforced && (await this.catchUp(side, client, now))) {
      const args = [maxMints ?? 0, capNano ?? -1, amount.mints, amount.spendNano, this.windowMs, ...this.known(side, now)];
      const reply = await this.attempt(() => this.admitScript([side.key], args) as Promise<number[]>);
      if (reply) {
        const [code = 0, ...window] = reply.map(Number);
        const usage = this.remember(side, client, window, now, 'room');
        if (code === 0) return { refusal: undefined, usage, added: true };
        return { refusal: code === 1 ? 'quota' : client === undefined ? 'budget' : 'spend', usage, added: false };
      }
    }
    const existing = side.entry(now, false);
    if (enforced) {
      const refusal = refusalOf(usageOf(existing, now, this.windowMs), maxMints, capNano);
      if (refusal) return { refusal: client === undefined ? 'budget' : refusal, usage: usageOf(existing, now, this.windowMs), added: false };
    }
    const entry = existing ?? side.entry(now, true);
    if (!entry) {
      // Unenforced counts of a client the copy has no room for are skipped; an enforced one is refused.
      return { refusal: enforced ? 'full' : undefined, usage: usageOf(undefined, now, this.windowMs), added: false };
    }
    this.addLocally(side, client, entry, amount);
    return { refusal: undefined, usage: usageOf(entry, now, this.windowMs), added: true };
  }

  private addLocally(side: Side, client: string | undefined, entry: WindowEntry, amount: Amount): void {
    addTo(entry, amount);
    entry.pendingMints += amount.mints;
    entry.pendingSpendNano += amount.spendNano;
    this.markDirty(client);
  }

  /** Gives back what one side added (the other side refused): counted here, merged in the background. */
  private giveBack(side: Side, client: string | undefined, amount: Amount, now: number): void {
    const entry = side.entry(now, false);
    if (entry) this.addLocally(side, client, entry, { mints: -amount.mints, spendNano: -amount.spendNano });
  }

  async admit(clientKey: string, amount: Amount, limits: AdmitLimits, now: number): Promise<Admission> {
    const clientSide = this.clientSide(clientKey);
    const globalSide = this.globalSide();
    const [client, global] = await Promise.all([
      this.admitSide(clientSide, clientKey, amount, limits.clientMints, limits.clientSpendNano, now),
      this.admitSide(globalSide, undefined, amount, undefined, limits.globalSpendNano, now),
    ]);
    if (client.refusal || global.refusal) {
      if (client.added) this.giveBack(clientSide, clientKey, amount, now);
      if (global.added) this.giveBack(globalSide, undefined, amount, now);
      if (client.refusal === 'full' || global.refusal === 'full') return { admitted: false, refusal: 'full' };
      if (client.refusal) return { admitted: false, refusal: client.refusal, window: client.usage };
      return { admitted: false, refusal: global.refusal as 'budget', window: global.usage };
    }
    this.countHour(now, amount);
    return { admitted: true, client: client.usage, global: global.usage };
  }

  private countHour(now: number, amount: Amount): void {
    this.pendingHours.add(now, amount);
    this.localHours.add(now, amount);
  }

  record(clientKey: string, amount: Amount, now: number): void {
    const clientSide = this.clientSide(clientKey);
    // A refund never opens a window (nothing to give back to one this replica has not got).
    const entry = clientSide.entry(now, amount.mints >= 0 && amount.spendNano >= 0);
    if (entry) this.addLocally(clientSide, clientKey, entry, amount);
    const globalSide = this.globalSide();
    this.addLocally(globalSide, undefined, globalSide.entry(now, true) as WindowEntry, amount);
    this.countHour(now, amount);
  }

  async charge(clientKey: string, amount: Amount, now: number): Promise<{ client: WindowUsage; global: WindowUsage }> {
    const add = async (side: Side, client: string | undefined): Promise<WindowUsage> => {
      if (await this.catchUp(side, client, now)) {
        const args = [0, -1, amount.mints, amount.spendNano, this.windowMs, ...this.known(side, now)];
        const reply = await this.attempt(() => this.admitScript([side.key], args) as Promise<number[]>);
        if (reply) return this.remember(side, client, reply.map(Number).slice(1), now, 'force');
      }
      // An admitted call is charged even past the capacity: its spend is never dropped.
      const entry = side.entry(now, false) ?? (client === undefined ? side.entry(now, true) : this.book.open(client, now, now + this.windowMs, true));
      this.addLocally(side, client, entry as WindowEntry, amount);
      return usageOf(entry, now, this.windowMs);
    };
    const [client, global] = await Promise.all([add(this.clientSide(clientKey), clientKey), add(this.globalSide(), undefined)]);
    this.countHour(now, amount);
    return { client, global };
  }

  /** A window as Redis has it plus what this replica has not handed over (or, before the catch-up, what it saw). */
  private async read(side: Side, client: string | undefined, now: number): Promise<WindowUsage | undefined> {
    const reply = await this.attempt(() => this.readScript([side.key], []) as Promise<number[]>);
    const entry = side.entry(now, false);
    if (!reply) return entry ? usageOf(entry, now, this.windowMs) : undefined;
    const window = reply.map(Number);
    const [m = 0, s = 0, ttl = -2] = window;
    if (ttl < 0 && !entry) return undefined;
    if (entry && entry.generation !== this.generation) {
      return {
        mints: Math.max(m + entry.pendingMints, entry.mints),
        spendNano: Math.max(s + entry.pendingSpendNano, entry.spendNano),
        spendUsd: Math.max(s + entry.pendingSpendNano, entry.spendNano) / 1e9,
        resetAt: ttl > 0 ? now + ttl : entry.resetAt,
      };
    }
    if (ttl < 0) return usageOf(entry, now, this.windowMs);
    return this.remember(side, client, window, now, 'no');
  }

  async windows(clientKeys: readonly string[], now: number): Promise<{ clients: Map<string, WindowUsage>; global: WindowUsage }> {
    const [global, ...clients] = await Promise.all([
      this.read(this.globalSide(), undefined, now),
      ...clientKeys.map((key) => this.read(this.clientSide(key), key, now)),
    ]);
    const map = new Map<string, WindowUsage>();
    clientKeys.forEach((key, i) => map.set(key, clients[i] ?? usageOf(undefined, now, this.windowMs)));
    return { clients: map, global: global ?? usageOf(undefined, now, this.windowMs) };
  }

  countRefusal(reason: string, now: number): void {
    this.pendingHours.refuse(now, reason);
    this.localHours.refuse(now, reason);
  }

  /** Hands Redis what was counted here: windows, the hourly history, the top clients. One run at a time. */
  flush(): Promise<void> {
    this.flushing ??= this.flushOnce().finally(() => {
      this.flushing = undefined;
    });
    return this.flushing;
  }

  private async flushOnce(): Promise<void> {
    if (this.closed) return;
    if (this.down && this.redis.status === 'ready') await this.attempt(() => this.redis.ping());
    if (!this.available()) return;
    const now = this.clock();
    if (this.globalDirty && !(await this.catchUp(this.globalSide(), undefined, now))) return;
    const keys = [...this.dirty];
    for (let i = 0; i < keys.length; i += MERGE_BATCH) {
      const batch = keys.slice(i, i + MERGE_BATCH);
      const results = await Promise.all(
        batch.map(async (key) => {
          if (!this.book.get(key, now)) {
            this.dirty.delete(key);
            return true;
          }
          return this.catchUp(this.clientSide(key), key, now);
        }),
      );
      if (results.includes(false)) return;
    }
    await this.flushHours();
    await this.flushTop(now);
  }

  private async flushHours(): Promise<void> {
    const hours = this.pendingHours.drain();
    if (hours.length === 0) return;
    const done = await this.attempt(async () => {
      const multi = this.redis.multi();
      for (const bucket of hours) {
        const key = hourKeyOf(bucket.hour);
        if (bucket.mints !== 0) multi.hincrby(key, 'm', bucket.mints);
        if (bucket.spendNano !== 0) multi.hincrby(key, 's', bucket.spendNano);
        for (const [reason, count] of Object.entries(bucket.refusals)) multi.hincrby(key, `r:${reason}`, count);
        multi.pexpire(key, HISTORY_TTL_MS);
      }
      const results = await multi.exec();
      const failed = results?.find(([error]) => error);
      if (!results || failed) throw failed?.[0] ?? new Error('transaction aborted');
      return true;
    });
    if (!done) for (const bucket of hours) this.putBack(bucket);
  }

  private putBack(bucket: HourUsage): void {
    this.pendingHours.add(bucket.hour, bucket);
    for (const [reason, count] of Object.entries(bucket.refusals)) this.pendingHours.refuse(bucket.hour, reason, count);
  }

  private async updateTop(now: number, members: readonly string[]): Promise<string[] | undefined> {
    const args: (string | number)[] = [now, TOP_KEPT, HISTORY_TTL_MS];
    for (const client of members) {
      const entry = this.book.get(client, now);
      if (entry) args.push(client, topScore(usageOf(entry, now, this.windowMs)), entry.resetAt);
    }
    return this.attempt(() => this.topScript([TOP_KEY, TOP_EXPIRY_KEY], args) as Promise<string[]>);
  }

  private async flushTop(now: number): Promise<void> {
    const members = [...this.touched];
    for (let i = 0; i < members.length; i += 500) {
      const batch = members.slice(i, i + 500);
      if (!(await this.updateTop(now, batch))) return;
      for (const member of batch) this.touched.delete(member);
    }
  }

  async snapshot(now: number, top: number): Promise<LedgerSnapshot> {
    await this.flush();
    const ranked = this.down ? undefined : await this.updateTop(now, []);
    if (!ranked) return this.localSnapshot(now, top);
    const [global, ...clients] = await Promise.all([
      this.read(this.globalSide(), undefined, now),
      ...ranked.slice(0, top).map((client) => this.read(this.clientSide(client), client, now)),
    ]);
    const hourly = await this.attempt(async () => {
      const multi = this.redis.multi();
      const hours = lastHours(now);
      for (const hour of hours) multi.hgetall(hourKeyOf(hour));
      const results = (await multi.exec()) ?? [];
      return hours.map((hour, i) => hourFromRedis(hour, (results[i]?.[1] ?? {}) as Record<string, string>));
    });
    if (!hourly || this.down) return this.localSnapshot(now, top);
    const rows = ranked.slice(0, top).flatMap((client, i) => {
      const usage = clients[i];
      return usage ? [{ client, usage }] : [];
    });
    return { store: 'redis', global, clients: rows, hourly };
  }

  private localSnapshot(now: number, top: number): LedgerSnapshot {
    const clients: { client: string; usage: WindowUsage }[] = [];
    for (const [client, entry] of this.book.live(now)) clients.push({ client, usage: usageOf(entry, now, this.windowMs) });
    clients.sort((a, b) => b.usage.spendNano - a.usage.spendNano || b.usage.mints - a.usage.mints);
    const global = this.global && this.global.resetAt > now ? usageOf(this.global, now, this.windowMs) : undefined;
    return { store: 'fallback', global, clients: clients.slice(0, top), hourly: this.localHours.last24(now) };
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    // What this replica counted reaches Redis before it goes (when Redis answers).
    await this.flush();
    this.closed = true;
    this.down = true;
  }
}

function hourFromRedis(hour: number, fields: Record<string, string>): HourUsage {
  const refusals: Record<string, number> = {};
  for (const [field, value] of Object.entries(fields)) if (field.startsWith('r:')) refusals[field.slice(2)] = Number(value);
  return { hour, mints: Number(fields.m ?? 0), spendNano: Number(fields.s ?? 0), refusals };
}
