import { spawnSync } from 'node:child_process';
import type { Cluster } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisLedger } from '../../src/usage/redis-ledger.js';
import { requireCommand } from '../support/commands.js';
import { RedisCluster } from '../support/redis-cluster.js';
import { waitUntil } from '../support/wait.js';

requireCommand('redis-server', 'apt-get install redis-server');
requireCommand('redis-cli', 'apt-get install redis-tools');

describe('RedisLedger on a three-master Redis Cluster: every script and transaction stays in one slot', () => {
  let cluster: RedisCluster;
  let redis: Cluster;
  let ledger: RedisLedger;

  beforeAll(async () => {
    cluster = await RedisCluster.start();
    redis = cluster.client();
    await waitUntil(() => redis.status === 'ready', 'the cluster client ready');
    ledger = new RedisLedger(redis);
    await waitUntil(async () => {
      await ledger.flush();
      return ledger.store === 'redis';
    }, 'the ledger on the cluster');
  }, 60_000);

  afterAll(async () => {
    await ledger?.close();
    redis?.disconnect();
    await cluster?.destroy();
  });

  it('admits, charges, records, reports across slots without a CROSSSLOT error (never falling back)', async () => {
    const now = Date.now();
    const clients = Array.from({ length: 30 }, (_, i) => `user:${i}`);
    for (const client of clients) {
      expect(await ledger.admit(client, { mints: 1, spendNano: 500_000_000 }, { clientMints: 2, clientSpendNano: 1e9, globalSpendNano: 100e9 }, now)).toMatchObject({
        admitted: true,
      });
      await ledger.charge(client, { mints: 0, spendNano: 250_000_000 }, now);
      ledger.record(client, { mints: 1, spendNano: 0 }, now);
      ledger.countRefusal('quota', now);
    }
    expect(await ledger.admit('user:0', { mints: 1, spendNano: 0 }, { clientMints: 2 }, now)).toMatchObject({ admitted: false, refusal: 'quota' });
    await ledger.flush();
    const snapshot = await ledger.snapshot(now, 100);
    expect(ledger.store).toBe('redis');
    expect(snapshot.store).toBe('redis');
    expect(snapshot.clients).toHaveLength(30);
    expect(snapshot.clients[0]?.usage).toMatchObject({ mints: 2, spendNano: 750_000_000 });
    expect(snapshot.global).toMatchObject({ mints: 60, spendNano: 22_500_000_000 });
    expect(snapshot.hourly.at(-1)?.refusals).toEqual({ quota: 30 });
    const { clients: windows } = await ledger.windows(clients, now);
    expect([...windows.values()].every((usage) => usage.spendNano === 750_000_000)).toBe(true);
    // the clients' windows really are spread over the masters
    const slots = new Set(clients.map((client) => Number(spawnSync('redis-cli', ['-p', String(cluster.ports[0]), 'cluster', 'keyslot', `parker-usage:{c:${client}}:day`], { encoding: 'utf8' }).stdout.trim())));
    expect(slots.size).toBeGreaterThan(20);
  });
});
