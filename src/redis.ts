import type { FastifyBaseLogger } from 'fastify';
import type { Redis } from 'ioredis';

/**
 * Where shared state lives right now: 'memory' (no REDIS_URL), 'redis' while it answers, 'fallback'
 * (in-process: still limited, not shared) while it does not.
 */
export type SharedStateMode = 'memory' | 'redis' | 'fallback';
export const SHARED_STATE_MODES: readonly SharedStateMode[] = ['memory', 'redis', 'fallback'];

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
 * Which store counts right now, for /healthz and /metrics. Logs each switch once, the first one
 * included: a REDIS_URL that never answers is in 'fallback' from the start and is still logged.
 */
export class SharedState {
  private current: SharedStateMode;
  private reportedDown = false;

  constructor(
    private readonly hasRedis: boolean,
    private readonly log: FastifyBaseLogger,
  ) {
    this.current = hasRedis ? 'fallback' : 'memory';
  }

  get mode(): SharedStateMode {
    return this.current;
  }

  redisUp(): void {
    if (!this.hasRedis || this.current === 'redis') return;
    this.current = 'redis';
    this.reportedDown = false;
    this.log.info('rate limit: counters shared in Redis');
  }

  redisDown(cause: string): void {
    if (!this.hasRedis || this.reportedDown) return;
    this.current = 'fallback';
    this.reportedDown = true;
    this.log.warn({ cause: cause.slice(0, 200) }, 'rate limit: Redis unreachable, counting in-process until it returns');
  }
}
