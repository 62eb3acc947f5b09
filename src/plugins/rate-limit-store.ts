import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import LocalStore from '@fastify/rate-limit/store/LocalStore.js';
import RedisStore from '@fastify/rate-limit/store/RedisStore.js';
import type { RedisClient, SharedState } from '../redis.js';

const LOCAL_CLIENTS = 50_000;
const KEY_PREFIX = 'parker-rl:';
/** A counter's key: hash-tagged, so in a cluster each counter (one key per script) has its slot. */
const counterKey = (key: string) => `${KEY_PREFIX}{${key}}`;
/** How many counters are added back into Redis at once. */
const MERGE_BATCH = 200;

// KEYS: counter. ARGV: in-process count, ms left in its window. Adds what was counted during an
// outage; a counter Redis no longer has (restarted empty) expires when the in-process window would.
const MERGE = `
local current = redis.call('INCRBY', KEYS[1], ARGV[1])
if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return current`;

/**
 * What a replica counted in-process while Redis did not answer, window by window, until it is
 * added back into Redis. Bounded: when full of windows still open it refuses a new client rather
 * than forget a counted one.
 */
export class FallbackCounters {
  private readonly windows = new Map<string, { count: number; resetAt: number }>();
  private sweptAt = 0;

  constructor(
    private readonly capacity = LOCAL_CLIENTS,
    private readonly now: () => number = Date.now,
  ) {}

  get size(): number {
    return this.windows.size;
  }

  incr(key: string, windowMs: number, max: number): { current: number; ttl: number } {
    const at = this.now();
    let window = this.windows.get(key);
    if (window && window.resetAt <= at) {
      this.windows.delete(key);
      window = undefined;
    }
    if (!window) {
      if (this.windows.size >= this.capacity) this.sweep(at);
      if (this.windows.size >= this.capacity) return { current: max + 1, ttl: 1_000 };
      window = { count: 0, resetAt: at + windowMs };
      this.windows.set(key, window);
    }
    window.count += 1;
    return { current: window.count, ttl: window.resetAt - at };
  }

  /** Adds every open window's count into Redis; what is added is forgotten here. Returns how many. */
  async mergeInto(redis: RedisClient): Promise<number> {
    let merged = 0;
    const open = [...this.windows].filter(([, w]) => w.resetAt > this.now());
    for (let i = 0; i < open.length; i += MERGE_BATCH) {
      await Promise.all(
        open.slice(i, i + MERGE_BATCH).map(async ([key, window]) => {
          const count = window.count;
          await redis.eval(MERGE, 1, counterKey(key), count, Math.max(1, window.resetAt - this.now()));
          // Requests counted here while the merge ran stay for the next one.
          window.count -= count;
          if (window.count <= 0 && this.windows.get(key) === window) this.windows.delete(key);
          merged++;
        }),
      );
    }
    for (const [key, window] of this.windows) if (window.resetAt <= this.now()) this.windows.delete(key);
    return merged;
  }

  /** At most once a second: a flood of new clients into a full store must not sweep on every request. */
  private sweep(at: number): void {
    if (at - this.sweptAt < 1_000) return;
    this.sweptAt = at;
    for (const [key, window] of this.windows) if (window.resetAt <= at) this.windows.delete(key);
  }
}

/**
 * A store class for @fastify/rate-limit: Redis when it answers, in-process counters otherwise,
 * added back into Redis when it returns.
 */
export function failoverStore(redis: RedisClient, state: SharedState): FastifyRateLimitStoreCtor {
  // The library's INCR script on one key; its prefix opens the hash tag that each key closes.
  const shared = new RedisStore(false, false, redis, `${KEY_PREFIX}{`);
  const fallback = new FallbackCounters();
  state.onRestore(async () => ({ counters_merged: await fallback.mergeInto(redis) }));

  const store: FastifyRateLimitStore = {
    incr(key, callback, timeWindow, max) {
      if (redis.status !== 'ready') {
        callback(null, fallback.incr(key, timeWindow, max));
        return;
      }
      shared.incr(
        `${key}}`,
        (error, result) => {
          // An answer proves Redis is back even when the connection never dropped (a frozen Redis
          // times commands out without closing the socket, so no 'ready' event follows).
          if (!error) {
            state.redisUp();
            return callback(null, result);
          }
          state.redisDown(error.message);
          callback(null, fallback.incr(key, timeWindow, max));
        },
        timeWindow,
        max,
      );
    },
    // Keys are already namespaced per limit by the key generators.
    child: () => store,
  };
  return constructorOf(store);
}

/**
 * In-process counters only. Used instead of the library's default store because that one gives
 * each limit an LRU of 5,000 clients (the size cannot be set per limit), and a busy minute would
 * evict and so reset clients still inside their window.
 */
export function localStore(): FastifyRateLimitStoreCtor {
  const local = new LocalStore(false, false, LOCAL_CLIENTS);
  const store: FastifyRateLimitStore = { incr: (...args) => local.incr(...args), child: () => store };
  return constructorOf(store);
}

/**
 * @fastify/rate-limit calls `new Store(options)`: a constructor that returns an object hands back
 * that object, so every limit shares the one store (keys are namespaced by the key generators).
 */
function constructorOf(store: FastifyRateLimitStore): FastifyRateLimitStoreCtor {
  return function SharedStore() {
    return store;
  } as unknown as FastifyRateLimitStoreCtor;
}
