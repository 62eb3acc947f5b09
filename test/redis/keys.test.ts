import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, ManualClock, SITE_ORIGIN } from '../support/app.js';
import { callIdOf, endCall, postSdp } from '../support/calls.js';
import { FakeOpenAI } from '../support/fake-openai.js';
import { REDIS_BACKENDS, type RedisBackend, usageStore } from '../support/redis-backends.js';
import { requireCommand } from '../support/commands.js';
import { waitUntil } from '../support/wait.js';

requireCommand('redis-server', 'apt-get install redis-server');
requireCommand('redis-cli', 'apt-get install redis-tools');

/** Hash-tagged: the part in braces picks the cluster slot, so each script's keys share one. */
const TAGGED_KEY =
  /^parker-(rl:\{[^{}]+\}|calls:\{calls\}:(deadlines|epoch|call:[^{}]+|client:[^{}]+)|usage:\{(c:[^{}]+|g)\}:(day|top|top-expiry|hour:\d+))$/;

describe.each(REDIS_BACKENDS)('keys and scripts ($name)', (kind) => {
  let backend: RedisBackend;

  beforeAll(async () => {
    backend = await kind.start();
  });

  afterAll(async () => {
    await backend?.close();
  });

  it('every key the service writes carries a hash tag, and every script runs without a cross-slot error', async () => {
    const fake = await FakeOpenAI.start();
    const clock = new ManualClock();
    const t = await buildTestApp(
      fake,
      {
        ...backend.env,
        RATE_LIMIT_BURST: '5',
        GLOBAL_MINTS_PER_MINUTE: '100',
        GLOBAL_MINTS_PER_DAY: '1000',
        MAX_CALL_SECONDS: '10',
        // the usage ledger's every script: the quota and both spend caps, and its background merges
        SPEND_PER_CLIENT_PER_DAY_USD: '100',
        GLOBAL_SPEND_PER_DAY_USD: '1000',
      },
      { now: clock.now, random: () => 0 },
    );
    try {
      const health = async () => (await t.app.inject({ url: '/healthz' })).json<{ rate_limit_store: string }>().rate_limit_store;
      await waitUntil(async () => (await health()) === 'redis', 'the replica on Redis');
      for (let i = 0; i < 3; i++) {
        const minted = await t.app.inject({ method: 'POST', url: '/v1/realtime/token', remoteAddress: `198.51.100.${i}`, headers: { origin: SITE_ORIGIN } });
        expect(minted.statusCode).toBe(200);
      }
      const ended = await postSdp(t.app);
      expect((await endCall(t.app, String(ended.headers.location))).statusCode).toBe(204);
      const due = await postSdp(t.app);
      expect(due.statusCode).toBe(201);
      clock.advance(10_000);
      await t.app.calls.hangUpDue();
      expect(fake.hangups.map((h) => h.callId)).toContain(callIdOf(due));
      const kept = await postSdp(t.app, undefined, { remoteAddress: '198.51.100.50' });
      expect(kept.statusCode).toBe(201);

      // the usage ledger's background work (top clients, hourly history) and its report
      await t.app.spend.flush();
      expect((await t.app.spend.report()).store).toBe('redis');
      const keys = await backend.keys('*');
      expect(keys.length).toBeGreaterThan(5);
      for (const key of keys) expect(key).toMatch(TAGGED_KEY);
      expect(keys).toContain('parker-rl:{m:ip:198.51.100.0}');
      expect(keys).toContain('parker-rl:{gm:all}');
      expect(keys).toContain(`parker-calls:{calls}:call:${callIdOf(kept)}`);
      expect(keys).toContain('parker-usage:{c:ip:198.51.100.0}:day');
      expect(keys).toEqual(expect.arrayContaining(['parker-usage:{g}:day', 'parker-usage:{g}:top', 'parker-usage:{g}:top-expiry']));
      // never fell back: a cross-slot script would have failed and switched to in-process counting
      expect(await health()).toBe('redis');
      expect(await usageStore(t)).toBe('redis');
      expect(t.logs.lines.filter((line) => line.level === 40 && String(line.msg).includes('Redis'))).toEqual([]);
    } finally {
      await t.app.close();
      await fake.close();
    }
  });
});
