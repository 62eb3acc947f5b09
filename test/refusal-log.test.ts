import { describe, expect, it } from 'vitest';
import { createLogger } from '../src/logger.js';
import { RefusalLog } from '../src/refusal-log.js';
import { LogCapture } from './support/app.js';

function setup(perSecond = 3) {
  let now = 0;
  const logs = new LogCapture();
  const log = createLogger({ logLevel: 'info' }, logs);
  const refusals = new RefusalLog({ log, perSecond, now: () => now });
  return { refusals, logs, advance: (ms: number) => (now += ms) };
}

describe('RefusalLog', () => {
  it('admits the first N refusals of a second, counts the rest by reason, and reports them in one line', () => {
    const { refusals, logs, advance } = setup(3);
    const admitted = ['origin', 'origin', 'auth', 'origin', 'origin', 'rate_limit'].map((reason) => refusals.admit(reason));
    expect(admitted).toEqual([true, true, true, false, false, false]);
    expect(logs.find('refusals aggregated')).toEqual([]);
    advance(1_000);
    expect(refusals.admit('origin')).toBe(true);
    expect(logs.find('refusals aggregated')).toEqual([
      expect.objectContaining({ level: 'warn', refusals_suppressed: { origin: 2, rate_limit: 1 }, refusals_suppressed_total: 3 }),
    ]);
  });

  it('reports on close what it still holds, and nothing when it holds nothing', () => {
    const { refusals, logs } = setup(1);
    refusals.admit('origin');
    refusals.close();
    expect(logs.find('refusals aggregated')).toEqual([]);
    refusals.admit('origin');
    refusals.close();
    expect(logs.find('refusals aggregated')).toHaveLength(1);
  });
});
