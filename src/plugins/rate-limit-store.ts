import type { FastifyRateLimitStore, FastifyRateLimitStoreCtor } from '@fastify/rate-limit';
import LocalStore from '@fastify/rate-limit/store/LocalStore.js';
import RedisStore from '@fastify/rate-limit/store/RedisStore.js';
import type { Redis } from 'ioredis';
import type { SharedState } from '../redis.js';

const LOCAL_CLIENTS = 50_000;

/** A store class for @fastify/rate-limit: Redis when it is ready, in-process counters otherwise. */
export function failoverStore(redis: Redis, state: SharedState): FastifyRateLimitStoreCtor {
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
