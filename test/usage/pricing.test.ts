import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BUILT_IN_PRICES, MAX_TOKENS_PER_RESPONSE, priceOverridesSchema, Pricing, type PricedUsage } from '../../src/usage/pricing.js';

const pricing = new Pricing();

function priced(model: string, usage: unknown): PricedUsage {
  const result = pricing.price(model, usage);
  if (!result || 'problem' in result) throw new Error(`not priced: ${JSON.stringify(result)}`);
  return result;
}

// A usage with one kind of token only, shaped as OpenAI sends it (cached tokens are part of the input).
const only = {
  textInput: (n: number) => ({ input_tokens: n, input_token_details: { text_tokens: n, audio_tokens: 0, cached_tokens: 0 } }),
  textCached: (n: number) => ({
    input_tokens: n,
    input_token_details: { text_tokens: n, cached_tokens: n, cached_tokens_details: { text_tokens: n, audio_tokens: 0 } },
  }),
  textOutput: (n: number) => ({ output_tokens: n, output_token_details: { text_tokens: n, audio_tokens: 0 } }),
  audioInput: (n: number) => ({ input_tokens: n, input_token_details: { text_tokens: 0, audio_tokens: n, cached_tokens: 0 } }),
  audioCached: (n: number) => ({
    input_tokens: n,
    input_token_details: { audio_tokens: n, cached_tokens: n, cached_tokens_details: { text_tokens: 0, audio_tokens: n } },
  }),
  audioOutput: (n: number) => ({ output_tokens: n, output_token_details: { text_tokens: 0, audio_tokens: n } }),
};

describe('Pricing: each token kind against hand-computed figures (gpt-realtime)', () => {
  // USD per 1M tokens -> nano-dollars per token is the price x 1000: $4 -> 4,000 n$ a token.
  it.each([
    ['text input', only.textInput(1_234), 'text_input', 1_234 * 4_000], // $0.004936
    ['cached text input', only.textCached(1_234), 'text_cached_input', 1_234 * 400], // $0.0004936
    ['text output', only.textOutput(1_234), 'text_output', 1_234 * 16_000], // $0.019744
    ['audio input', only.audioInput(1_234), 'audio_input', 1_234 * 32_000], // $0.039488
    ['cached audio input', only.audioCached(1_234), 'audio_cached_input', 1_234 * 400], // $0.0004936
    ['audio output', only.audioOutput(1_234), 'audio_output', 1_234 * 64_000], // $0.078976
  ])('%s', (_name, usage, kind, nano) => {
    const result = priced('gpt-realtime', usage);
    expect(result.costNanoUsd).toBe(nano);
    expect(result.tokens[kind as keyof PricedUsage['tokens']]).toBe(1_234);
    expect(Object.values(result.tokens).reduce((a: number, b: number) => a + b, 0)).toBe(1_234);
  });

  it('costUsd is the exact decimal of the nano-dollar figure', () => {
    expect(priced('gpt-realtime', only.audioOutput(1_234)).costUsd).toBe(0.078976);
    expect(priced('gpt-realtime', only.textCached(1_234)).costUsd).toBe(0.0004936);
  });
});

describe('Pricing: a mixed response', () => {
  // gpt-realtime-mini: text 0.60 / 0.06 / 2.40, audio 10 / 0.30 / 20 (USD per 1M tokens).
  const usage = {
    total_tokens: 12_341,
    input_tokens: 7_834,
    output_tokens: 4_507,
    input_token_details: {
      text_tokens: 523,
      audio_tokens: 7_311,
      image_tokens: 0,
      cached_tokens: 2_176,
      cached_tokens_details: { text_tokens: 128, audio_tokens: 2_048, image_tokens: 0 },
    },
    output_token_details: { text_tokens: 97, audio_tokens: 4_410 },
  };

  it('prices text and audio apart, cached tokens out of the input at the cached rate', () => {
    const result = priced('gpt-realtime-mini', usage);
    expect(result.tokens).toEqual({
      text_input: 395,
      text_cached_input: 128,
      text_output: 97,
      audio_input: 5_263,
      audio_cached_input: 2_048,
      audio_output: 4_410,
      image_input: 0,
      image_cached_input: 0,
    });
    // in pico-dollars: 395 x 600,000 + 128 x 60,000 + 97 x 2,400,000 + 5,263 x 10,000,000
    //   + 2,048 x 300,000 + 4,410 x 20,000,000 = 141,921,880,000 p$ = 141,921,880 n$
    expect(result.costNanoUsd).toBe(141_921_880);
    expect(result.costUsd).toBe(0.14192188);
  });

  it('sums exactly where floating point would not (0.1 + 0.2)', () => {
    // 0.06 and 0.30 per 1M are not exact in binary; in integers they are.
    const cheap = new Pricing({
      tiny: { text_input: 0.1, text_cached_input: 0.2, text_output: 0, audio_input: 0, audio_cached_input: 0, audio_output: 0 },
    });
    const result = cheap.price('tiny', {
      input_tokens: 2_000_000,
      input_token_details: { text_tokens: 2_000_000, cached_tokens: 1_000_000, cached_tokens_details: { text_tokens: 1_000_000 } },
    });
    expect(result).toMatchObject({ costNanoUsd: 300_000_000, costUsd: 0.3 });
  });
});

describe('Pricing: usage OpenAI sent inconsistently is never cheaper', () => {
  it('charges input tokens no detail names at the dearest input rate', () => {
    const result = priced('gpt-realtime', { input_tokens: 1_000, input_token_details: { text_tokens: 400 } });
    expect(result.tokens).toMatchObject({ text_input: 400, audio_input: 600 });
    expect(result.costNanoUsd).toBe(400 * 4_000 + 600 * 32_000);
  });

  it('charges output tokens no detail names at the dearest output rate', () => {
    expect(priced('gpt-realtime', { output_tokens: 10 }).tokens.audio_output).toBe(10);
  });

  it('caps cached tokens at their kind\'s input, and charges unattributed cached tokens as uncached', () => {
    const result = priced('gpt-realtime', {
      input_tokens: 100,
      input_token_details: { text_tokens: 100, cached_tokens: 500, cached_tokens_details: { text_tokens: 300 } },
    });
    expect(result.tokens).toMatchObject({ text_input: 0, text_cached_input: 100 });
    const unattributed = priced('gpt-realtime', { input_tokens: 100, input_token_details: { text_tokens: 100, cached_tokens: 100 } });
    expect(unattributed.tokens).toMatchObject({ text_input: 100, text_cached_input: 0 });
  });

  it('prices image tokens (a page can send images): at the model\'s image rate, else the dearest input rate', () => {
    const image = { input_tokens: 1_000, input_token_details: { image_tokens: 1_000 } };
    expect(priced('gpt-realtime', image).costNanoUsd).toBe(1_000 * 5_000);
    expect(priced('gpt-4o-realtime-preview-2024-12-17', image).costNanoUsd).toBe(1_000 * 40_000);
  });

  it('an empty usage costs nothing', () => {
    expect(priced('gpt-realtime', {})).toMatchObject({ costNanoUsd: 0, costUsd: 0 });
  });
});

describe('Pricing: garbage is refused with a problem, never a throw or NaN', () => {
  it.each([
    ['no usage', undefined, 'no usage'],
    ['null', null, 'no usage'],
    ['a string', 'lots', 'not an object'],
    ['an array', [1, 2], 'not an object'],
    ['a negative count', { input_tokens: -5 }, 'usage.input_tokens is not a whole number'],
    ['a fraction', { output_token_details: { audio_tokens: 1.5 } }, 'usage.output_token_details.audio_tokens'],
    ['a numeric string', { output_tokens: '100' }, 'usage.output_tokens'],
    ['NaN', { output_tokens: Number.NaN }, 'usage.output_tokens'],
    ['Infinity', { input_tokens: Number.POSITIVE_INFINITY }, 'usage.input_tokens'],
    ['an absurd count', { input_tokens: MAX_TOKENS_PER_RESPONSE + 1 }, 'over 10000000 tokens'],
    ['details that are not an object', { input_token_details: 7 }, 'usage.input_token_details is not an object'],
    ['cached details that are not an object', { input_token_details: { cached_tokens_details: [] } }, 'cached_tokens_details is not an object'],
  ])('%s', (_name, usage, problem) => {
    const result = pricing.price('gpt-realtime', usage);
    expect(result && 'problem' in result ? result.problem : result).toContain(problem);
  });

  it('an unknown model has no price (undefined), whatever the usage', () => {
    expect(pricing.price('gpt-9-realtime', only.audioOutput(10))).toBeUndefined();
    expect(pricing.has('gpt-9-realtime')).toBe(false);
    expect(pricing.has('gpt-realtime')).toBe(true);
  });

  it('any JSON value: a problem or a whole, finite, non-negative cost', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (usage) => {
        const result = pricing.price('gpt-realtime', usage);
        if (!result) return false;
        if ('problem' in result) return typeof result.problem === 'string';
        return Number.isSafeInteger(result.costNanoUsd) && result.costNanoUsd >= 0 && Number.isFinite(result.costUsd);
      }),
      { numRuns: 2_000 },
    );
  });

  it('the largest usage it accepts is still an exact, safe integer', () => {
    const max = MAX_TOKENS_PER_RESPONSE;
    const result = priced('gpt-4o-realtime-preview-2024-12-17', {
      input_tokens: max,
      output_tokens: max,
      input_token_details: { text_tokens: max, audio_tokens: max, image_tokens: max },
      output_token_details: { text_tokens: max, audio_tokens: max },
    });
    // 10M x (5 + 40 + 40 [images at the dearest] + 20 + 80) USD per 1M = $1,850
    expect(result.costNanoUsd).toBe(1_850 * 1e9);
  });
});

describe('REALTIME_PRICES', () => {
  const full = { text_input: 1, text_cached_input: 0.1, text_output: 2, audio_input: 3, audio_cached_input: 0.3, audio_output: 6 };

  it('adds a model and overrides a built-in one', () => {
    const custom = new Pricing({ 'gpt-realtime-2': { ...full, text_output: 24 }, 'gpt-realtime': full });
    expect(custom.price('gpt-realtime-2', only.textOutput(1_000))).toMatchObject({ costNanoUsd: 24_000_000 });
    expect(custom.price('gpt-realtime', only.audioOutput(1_000))).toMatchObject({ costNanoUsd: 6_000_000 });
    expect(custom.has('gpt-realtime-mini')).toBe(true);
  });

  it('rounds a sub-nano cost up, never down (prices with up to 6 decimals)', () => {
    const custom = new Pricing({ micro: { ...full, text_input: 0.000001 } });
    expect(custom.price('micro', only.textInput(1))).toMatchObject({ costNanoUsd: 1 });
  });

  it('validates: every kind present, numbers from 0 to 10,000, no unknown keys, at most 6 decimals', () => {
    expect(priceOverridesSchema.safeParse({ m: full }).success).toBe(true);
    const missing: Partial<typeof full> = { ...full };
    delete missing.audio_output;
    for (const bad of [
      { m: missing },
      { m: { ...full, audio_output: -1 } },
      { m: { ...full, audio_output: '64' } },
      { m: { ...full, audio_output: 20_000 } },
      { m: { ...full, audio_ouput: 64 } },
      { m: { ...full, text_input: 0.0000001 } },
      { '': full },
      [full],
    ]) {
      expect(priceOverridesSchema.safeParse(bad).success).toBe(false);
    }
  });

  it('the built-in table is valid under the same rules', () => {
    expect(priceOverridesSchema.safeParse(BUILT_IN_PRICES).success).toBe(true);
  });
});
