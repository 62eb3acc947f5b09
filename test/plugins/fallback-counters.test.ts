import { describe, expect, it } from 'vitest';
import { FallbackCounters } from '../../src/plugins/rate-limit-store.js';
import { ManualClock } from '../support/app.js';

describe('FallbackCounters (what a replica counts while Redis is down)', () => {
  it('counts per key within its window and starts again when the window turns', () => {
    const clock = new ManualClock();
    const counters = new FallbackCounters(10, clock.now);
    expect(counters.incr('m:ip:a', 60_000, 2)).toEqual({ current: 1, ttl: 60_000 });
    clock.advance(1_000);
    expect(counters.incr('m:ip:a', 60_000, 2)).toEqual({ current: 2, ttl: 59_000 });
    expect(counters.incr('m:ip:b', 60_000, 2).current).toBe(1);
    clock.advance(59_000);
    expect(counters.incr('m:ip:a', 60_000, 2)).toEqual({ current: 1, ttl: 60_000 });
  });

  it('when full of open windows, refuses a new client rather than forget a counted one', () => {
    const clock = new ManualClock();
    const counters = new FallbackCounters(3, clock.now);
    for (const key of ['a', 'b', 'c']) counters.incr(key, 60_000, 5);
    expect(counters.incr('newcomer', 60_000, 5).current).toBeGreaterThan(5);
    // the counted ones keep their counts
    expect(counters.incr('a', 60_000, 5).current).toBe(2);
    expect(counters.size).toBe(3);
    // once their windows turn, room comes back
    clock.advance(60_000);
    expect(counters.incr('newcomer', 60_000, 5).current).toBe(1);
  });
});
