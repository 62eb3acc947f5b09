import { describe, expect, it } from 'vitest';
import { bootSummary } from '../../src/boot-summary.js';
import { ConfigError, loadConfig } from '../../src/config.js';

const base = { OPENAI_API_KEY: 'sk-test-0123456789', ALLOWED_ORIGINS: 'https://www.espn.com' };

function problems(env: Record<string, string>): string[] {
  try {
    loadConfig({ ...base, ...env });
  } catch (error) {
    if (error instanceof ConfigError) return [...error.problems];
    throw error;
  }
  return [];
}

describe('spend settings (SPEND_PER_CLIENT_PER_DAY_USD, GLOBAL_SPEND_PER_DAY_USD, SECRET_SPEND_ESTIMATE_USD, REALTIME_PRICES)', () => {
  it('unset: caps off, a secret estimated at $0.50, the built-in prices only', () => {
    const config = loadConfig(base);
    expect(config.spendPerClientPerDayUsd).toBeUndefined();
    expect(config.globalSpendPerDayUsd).toBeUndefined();
    expect(config.secretSpendEstimateUsd).toBe(0.5);
    expect(config.realtimePrices).toEqual({});
  });

  it('reads the caps and the estimate as dollars', () => {
    const config = loadConfig({ ...base, SPEND_PER_CLIENT_PER_DAY_USD: '1.25', GLOBAL_SPEND_PER_DAY_USD: '500', SECRET_SPEND_ESTIMATE_USD: '0.2' });
    expect(config).toMatchObject({ spendPerClientPerDayUsd: 1.25, globalSpendPerDayUsd: 500, secretSpendEstimateUsd: 0.2 });
  });

  it.each([
    ['SPEND_PER_CLIENT_PER_DAY_USD', 'one dollar'],
    ['SPEND_PER_CLIENT_PER_DAY_USD', '0'],
    ['GLOBAL_SPEND_PER_DAY_USD', '-5'],
    ['SECRET_SPEND_ESTIMATE_USD', 'NaN'],
  ])('%s=%s stops the boot, naming the variable', (name, value) => {
    expect(problems({ [name]: value })).toEqual([expect.stringMatching(new RegExp(`^${name} must be a number from`))]);
  });

  it('REALTIME_PRICES that is not JSON, or not prices, is named with what is wrong', () => {
    expect(problems({ REALTIME_PRICES: '{gpt: 4}' })).toEqual([expect.stringMatching(/^REALTIME_PRICES must be JSON/)]);
    const [problem] = problems({
      REALTIME_PRICES: JSON.stringify({ 'gpt-realtime-2': { text_input: 4, text_cached_input: 0.4, text_output: -24, audio_input: 32, audio_cached_input: 0.4 } }),
    });
    expect(problem).toContain('REALTIME_PRICES');
    expect(problem).toContain('gpt-realtime-2.text_output must be 0 or more');
    expect(problem).toContain('gpt-realtime-2.audio_output must be a number');
  });

  it('with a cap on, an allowed model without a price is a boot error; a price for it (or no cap) boots', () => {
    const models = { ALLOWED_MODELS: 'gpt-realtime,gpt-realtime-2', SPEND_PER_CLIENT_PER_DAY_USD: '1' };
    expect(problems(models)).toEqual([
      'REALTIME_PRICES has no price for gpt-realtime-2 (in ALLOWED_MODELS): with a spend cap on, every allowed model needs one',
    ]);
    const prices = { text_input: 4, text_cached_input: 0.4, text_output: 24, audio_input: 32, audio_cached_input: 0.4, audio_output: 64 };
    expect(problems({ ...models, REALTIME_PRICES: JSON.stringify({ 'gpt-realtime-2': prices }) })).toEqual([]);
    expect(problems({ ALLOWED_MODELS: 'gpt-realtime,gpt-realtime-2' })).toEqual([]);
    expect(problems({ ALLOWED_MODELS: 'gpt-realtime,gpt-realtime-2', GLOBAL_SPEND_PER_DAY_USD: '100' })).toHaveLength(1);
  });

  it('the boot summary names the caps, and the estimate while one is on', () => {
    expect(bootSummary(loadConfig({ ...base, SPEND_PER_CLIENT_PER_DAY_USD: '1.5' }))).toMatchObject({
      spend_caps_usd: { per_client_per_day: 1.5, global_per_day: null },
      secret_spend_estimate_usd: 0.5,
    });
    expect(bootSummary(loadConfig(base))).not.toHaveProperty('secret_spend_estimate_usd');
  });
});
