import { describe, expect, it } from 'vitest';
import { bootSummary } from '../src/boot-summary.js';
import { loadConfig } from '../src/config.js';
import { BASE_ENV, problemsOf } from './support/config.js';

const base = BASE_ENV;

describe('REDIS_CLUSTER_NODES', () => {
  it('is unset by default', () => {
    expect(loadConfig(base).redisClusterNodes).toBeUndefined();
  });

  it('takes host:port seeds, commas or a JSON array, IPv6 in brackets', () => {
    expect(loadConfig({ ...base, REDIS_CLUSTER_NODES: ' 10.0.0.1:7000, redis-2.internal:7001 ,[fd12::3]:7002' }).redisClusterNodes).toEqual({
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: 'redis-2.internal', port: 7001 },
        { host: 'fd12::3', port: 7002 },
      ],
      tls: false,
      username: undefined,
      password: undefined,
    });
    expect(loadConfig({ ...base, REDIS_CLUSTER_NODES: '["10.0.0.1:7000"]' }).redisClusterNodes?.nodes).toEqual([{ host: '10.0.0.1', port: 7000 }]);
  });

  it('takes redis:// and rediss:// seeds, whose credentials and TLS apply to every node', () => {
    const config = loadConfig({ ...base, REDIS_CLUSTER_NODES: 'rediss://app:s3cret-pass@10.0.0.1:7000,rediss://app:s3cret-pass@10.0.0.2:7000' });
    expect(config.redisClusterNodes).toEqual({
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7000 },
      ],
      tls: true,
      username: 'app',
      password: 's3cret-pass',
    });
  });

  it('refuses REDIS_URL with it: one of the two says where Redis is', () => {
    expect(problemsOf({ ...base, REDIS_URL: 'redis://127.0.0.1:6379', REDIS_CLUSTER_NODES: '127.0.0.1:7000' })).toContain(
      'REDIS_CLUSTER_NODES set REDIS_URL (one server) or REDIS_CLUSTER_NODES (a cluster), not both',
    );
  });

  it.each([
    ['a name without a port', 'redis-1.internal'],
    ['a port out of range', '127.0.0.1:70000'],
    ['another scheme', 'http://127.0.0.1:7000'],
    ['a path or database', 'redis://127.0.0.1:7000/2'],
    ['seeds that disagree on credentials', 'redis://a:one-password@10.0.0.1:7000,redis://a:other-password@10.0.0.2:7000'],
    ['an empty list', ' , '],
  ])('refuses %s, naming the entry but never quoting it', (_what, value) => {
    const message = problemsOf({ ...base, REDIS_CLUSTER_NODES: value });
    expect(message).toMatch(/REDIS_CLUSTER_NODES /);
    expect(message).not.toContain('password');
    expect(message).not.toContain('redis-1.internal');
  });

  it('the boot summary says cluster and how many seeds, never the credentials', () => {
    const config = loadConfig({ ...base, REDIS_CLUSTER_NODES: 'rediss://app:s3cret-pass@10.0.0.1:7000,rediss://app:s3cret-pass@10.0.0.2:7000' });
    const summary = bootSummary(config);
    expect(summary).toMatchObject({ store: 'redis_cluster', redis_cluster_seeds: 2 });
    expect(JSON.stringify(summary)).not.toContain('s3cret');
  });
});
