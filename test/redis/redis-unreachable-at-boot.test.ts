import { describe, expect, it } from 'vitest';
import { useFakeOpenAI } from '../support/app.js';
import { requireCommand } from '../support/commands.js';
import { RedisServer } from '../support/redis-server.js';

requireCommand('redis-server', 'apt-get install redis-server');

const openai = useFakeOpenAI();

const UNREACHABLE = 'rate limit: Redis unreachable, counting in-process until it returns';
const SHARED = 'rate limit: counters shared in Redis';

describe('a REDIS_URL that does not answer', () => {
  it('is logged at boot (once, however many reconnects fail), and at every change after', async () => {
    // A port with nothing on it yet: the service boots while Redis is down.
    const redis = await RedisServer.reserve();
    try {
      const t = await openai.app({ REDIS_URL: redis.url });
      await expect.poll(() => t.logs.find(UNREACHABLE).length).toBe(1);
      const [first] = t.logs.find(UNREACHABLE);
      expect(first).toMatchObject({ level: 'warn' });
      expect(String(first?.cause)).toMatch(/ECONNREFUSED/);
      expect(t.logs.find('service configured')[0]).toMatchObject({ store: 'redis' });
      // still serving, on in-process counters
      expect((await t.mint()).statusCode).toBe(200);
      expect((await t.app.inject({ method: 'GET', url: '/healthz' })).json()).toMatchObject({ rate_limit_store: 'fallback' });

      // Redis comes up: one line; goes down again: one more line; and each only once.
      await redis.resume();
      await expect.poll(() => t.logs.find(SHARED).length, { timeout: 10_000 }).toBe(1);
      await redis.stop();
      await expect.poll(() => t.logs.find(UNREACHABLE).length, { timeout: 10_000 }).toBe(2);
      await redis.resume();
      await expect.poll(() => t.logs.find(SHARED).length, { timeout: 10_000 }).toBe(2);
      expect(t.logs.find(UNREACHABLE)).toHaveLength(2);
    } finally {
      await redis.stop();
    }
  });
});
