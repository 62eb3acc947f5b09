import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import LocalStore from '@fastify/rate-limit/store/LocalStore.js';
import RedisStore from '@fastify/rate-limit/store/RedisStore.js';
import type { FastifyBaseLogger } from 'fastify';
import type { Redis } from 'ioredis';
import type { RateLimitStoreMode } from '../metrics.js';

const LOCAL_CLIENTS = 50_000;

/**
 * A Redis client that fails fast: commands error at once while disconnected, reconnects forever.
 * ioredis is loaded only when REDIS_URL is set (it weighs ~9 MB of RSS).
 */
export async function createRedis(url: string): Promise<Redis> {
  const { Redis } = await import('ioredis');
  return new Redis(url, {
    lazyConnect: true,
    connectTimeout: 1_000,
    commandTimeout: 500,
    maxRetriesPerRequest: 1,
    enableOfflineQueue: false,
    retryStrategy: (times) => Math.min(times * 200, 2_000),
  });
}

/**
 * Which store counts right now. With Redis: 'redis' while it answers, 'fallback' (in-process
 * counters: still limited, not shared) while it does not. Logs each switch once.
 */
export class RateLimitStoreState {
  private current: RateLimitStoreMode;

  constructor(
    private readonly hasRedis: boolean,
    private readonly log: FastifyBaseLogger,
  ) {
    this.current = hasRedis ? 'fallback' : 'memory';
  }

  get mode(): RateLimitStoreMode {
    return this.current;
  }

  redisUp(): void {
    if (!this.hasRedis || this.current === 'redis') return;
    this.current = 'redis';
    this.log.info('rate limit: counters shared in Redis');
  }

  redisDown(cause: string): void {
    if (!this.hasRedis || this.current === 'fallback') return;
    this.current = 'fallback';
    this.log.warn({ cause }, 'rate limit: Redis unreachable, counting in-process until it returns');
  }
}

/** A store class for @fastify/rate-limit: Redis when it is ready, in-process counters otherwise. */
export function failoverStore(redis: Redis, state: RateLimitStoreState): FastifyRateLimitStoreCtor {
  const shared = new RedisStore(false, false, redis, 'parker-rl:');
  const local = new LocalStore(false, false, LOCAL_CLIENTS);
  redis.on('ready', () => state.redisUp());
  redis.on('error', (error: Error) => state.redisDown(error.message));
  redis.on('close', () => state.redisDown('connection closed'));

  const store: FastifyRateLimitStore = {
    incr(key, callback, timeWindow, max) {
      if (redis.status !== 'ready') {
        local.incr(key, callback, timeWindow, max);
        return;
      }
      shared.incr(
        key,
        (error, result) => {
          // An answer proves Redis is back even when the connection never dropped (a frozen Redis
          // times commands out without closing the socket, so no 'ready' event follows).
          if (!error) {
            state.redisUp();
            return callback(null, result);
          }
          state.redisDown(error.message);
          local.incr(key, callback, timeWindow, max);
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
