import { Redis, type Cluster } from 'ioredis';
import { buildTestApp, type Env, type TestApp } from './app.js';
import { FakeOpenAI } from './fake-openai.js';
import { RedisCluster } from './redis-cluster.js';
import { RedisServer } from './redis-server.js';
import { waitUntil } from './wait.js';

/** A running Redis the service can be pointed at: one server, or a three-master cluster. */
export interface RedisBackend {
  readonly kind: 'single' | 'cluster';
  /** The environment that points the service at it (REDIS_URL or REDIS_CLUSTER_NODES). */
  readonly env: Record<string, string>;
  /** A client for assertions (keys, slots); closed by close(). */
  readonly admin: Redis | Cluster;
  /** Every key on every master that matches the pattern, sorted. */
  keys(pattern: string): Promise<string[]>;
  flush(): Promise<void>;
  /** Kills the server(s): everything in them is gone. */
  stop(): Promise<void>;
  /** Starts again on the same port(s), empty. */
  resume(): Promise<void>;
  close(): Promise<void>;
}

export interface RedisBackendKind {
  readonly name: string;
  start(): Promise<RedisBackend>;
}

async function single(): Promise<RedisBackend> {
  const server = await RedisServer.start();
  const admin = new Redis(server.url, { maxRetriesPerRequest: 1 });
  // Tests stop and restart the server under it: it reconnects by itself.
  admin.on('error', () => undefined);
  return {
    kind: 'single',
    env: { REDIS_URL: server.url },
    admin,
    keys: async (pattern) => (await admin.keys(pattern)).sort(),
    flush: async () => void (await admin.flushall()),
    stop: () => server.stop(),
    resume: () => server.resume(),
    close: async () => {
      admin.disconnect();
      await server.stop();
    },
  };
}

async function cluster(): Promise<RedisBackend> {
  const nodes = await RedisCluster.start();
  const admin = nodes.client();
  admin.on('error', () => undefined);
  return {
    kind: 'cluster',
    env: { REDIS_CLUSTER_NODES: nodes.nodeList },
    admin,
    keys: async (pattern) => {
      const perMaster = await Promise.all(nodes.ports.map(async (port) => {
        const node = new Redis({ host: '127.0.0.1', port, lazyConnect: true });
        try {
          await node.connect();
          return await node.keys(pattern);
        } finally {
          node.disconnect();
        }
      }));
      return perMaster.flat().sort();
    },
    flush: () => nodes.flushAll(),
    stop: () => nodes.stop(),
    resume: () => nodes.resume(),
    close: async () => {
      admin.disconnect();
      await nodes.destroy();
    },
  };
}

/** For `describe.each(REDIS_BACKENDS)('... ($name)', ...)`: every Redis-backed test runs on both. */
export const REDIS_BACKENDS: readonly RedisBackendKind[] = [
  { name: 'single Redis', start: single },
  { name: 'three-master Redis Cluster', start: cluster },
];

/** What /healthz says the usage ledger counts in: "redis", "fallback" or "memory". */
export async function usageStore(t: TestApp): Promise<string> {
  return (await t.app.inject({ method: 'GET', url: '/healthz' })).json<{ usage_store: string }>().usage_store;
}

export interface TwoReplicas {
  redis: RedisBackend;
  fake: FakeOpenAI;
  a: TestApp;
  b: TestApp;
}

/** A Redis of `kind`, a fake OpenAI and two replicas on them, resolved once both count usage in Redis. */
export async function startTwoReplicas(kind: RedisBackendKind, env: Env): Promise<TwoReplicas> {
  const redis = await kind.start();
  const fake = await FakeOpenAI.start();
  const a = await buildTestApp(fake, { ...redis.env, ...env });
  const b = await buildTestApp(fake, { ...redis.env, ...env });
  await waitUntil(async () => (await usageStore(a)) === 'redis' && (await usageStore(b)) === 'redis', 'both replicas counting in Redis');
  return { redis, fake, a, b };
}

/** Closes what startTwoReplicas started (whatever part of it did start). */
export async function closeTwoReplicas(replicas: Partial<TwoReplicas>): Promise<void> {
  await replicas.a?.app.close();
  await replicas.b?.app.close();
  await replicas.fake?.close();
  await replicas.redis?.close();
}
