import type { FastifyBaseLogger } from 'fastify';
import type { Cluster, Redis } from 'ioredis';
import type { Config } from './config.js';

/** One Redis server (REDIS_URL) or a Redis Cluster (REDIS_CLUSTER_NODES): the same commands on both. */
export type RedisClient = Redis | Cluster;

/**
 * Where shared state lives right now: 'memory' (no Redis configured), 'redis' while it answers,
 * 'fallback' (in-process: still limited, not shared) while it does not.
 */
export type SharedStateMode = 'memory' | 'redis' | 'fallback';
export const SHARED_STATE_MODES: readonly SharedStateMode[] = ['memory', 'redis', 'fallback'];

/**
 * A client that fails fast: commands error at once while disconnected, reconnect forever. ioredis
 * is loaded only when Redis is configured (it weighs ~9 MB of RSS). Undefined without Redis.
 */
export async function createRedis(config: Pick<Config, 'redisUrl' | 'redisClusterNodes'>): Promise<RedisClient | undefined> {
  const { redisUrl, redisClusterNodes: seeds } = config;
  if (!redisUrl && !seeds) return undefined;
  const { Cluster, Redis } = await import('ioredis');
  const failFast = { connectTimeout: 1_000, commandTimeout: 500, maxRetriesPerRequest: 1 };
  const reconnect = (times: number) => Math.min(times * 200, 2_000);
  if (seeds) {
    return new Cluster(seeds.nodes, {
      lazyConnect: true,
      enableOfflineQueue: false,
      clusterRetryStrategy: reconnect,
      slotsRefreshTimeout: 1_000,
      // With TLS, connect by the names the cluster announces so certificates match them.
      ...(seeds.tls ? { dnsLookup: (address: string, done: (error: null, address: string) => void) => done(null, address) } : {}),
      redisOptions: { ...failFast, username: seeds.username, password: seeds.password, tls: seeds.tls ? {} : undefined },
    });
  }
  return new Redis(redisUrl as string, { lazyConnect: true, enableOfflineQueue: false, retryStrategy: reconnect, ...failFast });
}

/** What /healthz says about Redis (absent without Redis). */
export interface RedisHealth {
  topology: 'single' | 'cluster';
  mode: 'redis' | 'fallback';
  /** ISO 8601: when `mode` last changed. */
  since: string;
  /** This replica holds state Redis lacks: in fallback, and after a return until it is put back. */
  lost_writes_possible: boolean;
  note?: string;
}

/**
 * Something this replica kept while Redis could not hear it (or lost), put back when Redis answers:
 * resolves with what it put back, for the log line.
 */
export type RestoreTask = () => Promise<Record<string, number>>;

const RESTORE_RETRY_MS = 1_000;

/**
 * Whether Redis answers, for the stores, /healthz and /metrics: each switch is logged once, the
 * first one included (Redis configured but never answering is in 'fallback' from the start and is
 * still logged). When
 * Redis answers again after a loss (or was found emptied), it runs every restore task, so what the
 * replicas kept in-process goes back into Redis.
 */
export class SharedState {
  private current: SharedStateMode;
  private reportedDown = false;
  private changedAt = Date.now();
  private readonly tasks: RestoreTask[] = [];
  /** Bumped on every loss: a restore counts only if none happened while it ran. */
  private losses = 0;
  /** Redis may lack what this replica holds (true from boot until the first restore completes). */
  private behind: boolean;
  private restoring = false;
  private restoreAgain = false;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    private readonly redis: RedisClient | undefined,
    private readonly log: FastifyBaseLogger,
  ) {
    this.current = redis ? 'fallback' : 'memory';
    this.behind = redis !== undefined;
    redis?.on('ready', () => this.redisUp());
    redis?.on('error', (error: Error) => this.redisDown(error.message));
    redis?.on('close', () => this.redisDown('connection closed'));
  }

  get mode(): SharedStateMode {
    return this.current;
  }

  /** Redis configured and answering (as far as the last command or event says). */
  get shared(): boolean {
    return this.current === 'redis';
  }

  /** Runs `task` on every return of Redis (and on the first connection). */
  onRestore(task: RestoreTask): void {
    this.tasks.push(task);
  }

  /** A command answered (or the connection is ready). */
  redisUp(): void {
    if (!this.redis || this.closed || this.current === 'redis') return;
    this.current = 'redis';
    this.reportedDown = false;
    this.changedAt = Date.now();
    this.log.info('rate limit: counters shared in Redis');
    this.restore('reconnected');
  }

  /** A command failed, or the connection dropped. */
  redisDown(cause: string): void {
    // Closing quits the connection on purpose: not an outage.
    if (!this.redis || this.closed) return;
    this.losses++;
    this.behind = true;
    if (this.reportedDown) return;
    if (this.current !== 'fallback') this.changedAt = Date.now();
    this.current = 'fallback';
    this.reportedDown = true;
    this.log.warn({ cause: cause.slice(0, 200) }, 'rate limit: Redis unreachable, counting in-process until it returns');
  }

  /** Redis answers but lost what this replica put there (a restart or flush it did not see): put it back. */
  dataLost(cause: string): void {
    if (!this.redis || this.closed) return;
    this.losses++;
    this.behind = true;
    this.log.warn({ cause }, 'redis: shared state found missing, re-registering');
    if (this.current === 'redis') this.restore('data_lost');
  }

  health(): RedisHealth | undefined {
    if (!this.redis) return undefined;
    const mode = this.current === 'redis' ? 'redis' : 'fallback';
    let note: string | undefined;
    if (mode === 'fallback') {
      note = 'Redis unreachable: limits counted per replica in-process, call deadlines kept by the replica that started them';
    } else if (this.behind) {
      note = 'Redis answers again: putting back what this replica kept in-process';
    }
    return {
      topology: this.redis.isCluster ? 'cluster' : 'single',
      mode,
      since: new Date(this.changedAt).toISOString(),
      lost_writes_possible: this.behind,
      ...(note ? { note } : {}),
    };
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.retryTimer);
  }

  private restore(reason: string): void {
    if (this.restoring) {
      this.restoreAgain = true;
      return;
    }
    this.restoring = true;
    void this.runRestore(reason).finally(() => {
      this.restoring = false;
      if (this.restoreAgain && this.current === 'redis' && !this.closed) {
        this.restoreAgain = false;
        this.restore(reason);
      }
    });
  }

  private async runRestore(reason: string): Promise<void> {
    const losses = this.losses;
    const restored: Record<string, number> = {};
    try {
      for (const task of this.tasks) Object.assign(restored, await task());
    } catch (error) {
      this.log.warn({ err: error }, 'redis: could not put back what this replica kept yet; retrying');
      clearTimeout(this.retryTimer);
      if (!this.closed) {
        this.retryTimer = setTimeout(() => this.current === 'redis' && this.restore(reason), RESTORE_RETRY_MS);
        this.retryTimer.unref();
      }
      return;
    }
    if (this.losses !== losses || this.current !== 'redis') return;
    this.behind = false;
    if (reason !== 'reconnected' || Object.values(restored).some((n) => n > 0)) {
      this.log.info({ reason, ...restored }, 'redis: re-registered what this replica holds');
    }
  }
}
