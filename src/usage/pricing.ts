import { z } from 'zod';

/** The kinds every model has a price for: text and audio apart, uncached input apart from cached. */
type TextAndAudioKind = 'text_input' | 'text_cached_input' | 'text_output' | 'audio_input' | 'audio_cached_input' | 'audio_output';

/**
 * USD per 1M tokens. Image input (a page can send images to gpt-realtime) is optional: absent, it is
 * priced at the dearest input rate.
 */
export type TokenPrices = Record<TextAndAudioKind, number> & { image_input?: number; image_cached_input?: number };

/** OpenAI's response.done -> response.usage, as sent (every field optional, may be garbage). */
export interface RealtimeUsage {
  total_tokens?: number;
  input_tokens?: number;
  output_tokens?: number;
  input_token_details?: {
    text_tokens?: number;
    audio_tokens?: number;
    image_tokens?: number;
    cached_tokens?: number;
    cached_tokens_details?: { text_tokens?: number; audio_tokens?: number; image_tokens?: number };
  };
  output_token_details?: { text_tokens?: number; audio_tokens?: number };
}

/** What was charged, by kind: uncached input apart from cached. */
export type TokenCounts = Record<TextAndAudioKind | 'image_input' | 'image_cached_input', number>;

export interface PricedUsage {
  tokens: TokenCounts;
  /** Integer nano-dollars (1e-9 USD), rounded up when a price has more than 3 decimals. */
  costNanoUsd: number;
  costUsd: number;
}

type Kind = keyof TokenCounts;
/** Every kind of token a response is charged for, in the order the audit line lists them. */
export const TOKEN_KINDS: readonly Kind[] = [
  'text_input',
  'text_cached_input',
  'text_output',
  'audio_input',
  'audio_cached_input',
  'audio_output',
  'image_input',
  'image_cached_input',
];

/**
 * OpenAI's published prices (USD per 1M tokens), checked on 2026-12-01 against the model pages on
 * developers.openai.com: gpt-realtime (compare page, text 4 / 0.40 / 16; its audio and image rates as
 * on gpt-realtime-1.5: audio 32 / 0.40 / 64, image 5 / 0.50), gpt-realtime-mini (text 0.60 on the
 * GPT-Realtime-2.1 Mini comparison; rates as that page: 0.60 / 0.06 / 2.40, audio 10 / 0.30 / 20,
 * image 0.80 / 0.08), gpt-4o-realtime-preview (5 / 2.50 / 20, 40 / 2.50 / 80; marked "shut down")
 * and gpt-4o-mini-realtime-preview (0.60 / 0.30 / 2.40, 10 / 0.30 / 20). All as in SPEC.md.
 * Newer models (gpt-realtime-2: text output 24) are not defaults: price them with REALTIME_PRICES.
 */
export const BUILT_IN_PRICES: Readonly<Record<string, TokenPrices>> = Object.freeze({
  'gpt-realtime': {
    text_input: 4,
    text_cached_input: 0.4,
    text_output: 16,
    audio_input: 32,
    audio_cached_input: 0.4,
    audio_output: 64,
    image_input: 5,
    image_cached_input: 0.5,
  },
  'gpt-realtime-mini': {
    text_input: 0.6,
    text_cached_input: 0.06,
    text_output: 2.4,
    audio_input: 10,
    audio_cached_input: 0.3,
    audio_output: 20,
    image_input: 0.8,
    image_cached_input: 0.08,
  },
  'gpt-4o-realtime-preview-2024-12-17': {
    text_input: 5,
    text_cached_input: 2.5,
    text_output: 20,
    audio_input: 40,
    audio_cached_input: 2.5,
    audio_output: 80,
  },
  'gpt-4o-mini-realtime-preview-2024-12-17': {
    text_input: 0.6,
    text_cached_input: 0.3,
    text_output: 2.4,
    audio_input: 10,
    audio_cached_input: 0.3,
    audio_output: 20,
  },
});

/** More tokens than this in one field of one response is not usage but garbage. */
export const MAX_TOKENS_PER_RESPONSE = 10_000_000;
const MAX_PRICE_USD = 10_000;

// USD per 1M tokens with at most 6 decimals, so that micro-USD per 1M tokens (= pico-USD per token) is whole.
const price = z
  .number({ error: 'must be a number (USD per 1M tokens)' })
  .min(0, { error: 'must be 0 or more' })
  .max(MAX_PRICE_USD, { error: `must be at most ${MAX_PRICE_USD} (USD per 1M tokens)` })
  .refine((usd) => Math.abs(usd * 1e6 - Math.round(usd * 1e6)) < 1e-6, { error: 'must have at most 6 decimals' });

export const tokenPricesSchema = z.strictObject({
  text_input: price,
  text_cached_input: price,
  text_output: price,
  audio_input: price,
  audio_cached_input: price,
  audio_output: price,
  image_input: price.optional(),
  image_cached_input: price.optional(),
});

/** REALTIME_PRICES: `{"<model>": {text_input, text_cached_input, text_output, audio_input, audio_cached_input, audio_output}}`. */
export const priceOverridesSchema = z.record(z.string().trim().min(1, { error: 'model names must not be empty' }), tokenPricesSchema);

/** Pico-USD per token of each kind (= micro-USD per 1M tokens): whole numbers, so sums are exact. */
type PicoPrices = Record<Kind, bigint>;

function picoPrices(prices: TokenPrices): PicoPrices {
  const pico = (usd: number) => BigInt(Math.round(usd * 1e6));
  const dearestInput = Math.max(prices.text_input, prices.audio_input);
  const dearestCached = Math.max(prices.text_cached_input, prices.audio_cached_input);
  return {
    text_input: pico(prices.text_input),
    text_cached_input: pico(prices.text_cached_input),
    text_output: pico(prices.text_output),
    audio_input: pico(prices.audio_input),
    audio_cached_input: pico(prices.audio_cached_input),
    audio_output: pico(prices.audio_output),
    // A model without an image price never undercharges images: the dearest rate of its kind.
    image_input: pico(prices.image_input ?? dearestInput),
    image_cached_input: pico(prices.image_cached_input ?? dearestCached),
  };
}

interface Problem {
  problem: string;
}

/** Reads one optional token count; a present one must be a whole number from 0 to the maximum. */
function tokenCount(parent: Record<string, unknown>, field: string, path: string): number | Problem {
  const value = parent[field];
  if (value === undefined || value === null) return 0;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0) {
    return { problem: `usage.${path}${field} is not a whole number of tokens >= 0` };
  }
  if (value > MAX_TOKENS_PER_RESPONSE) {
    return { problem: `usage.${path}${field} is over ${MAX_TOKENS_PER_RESPONSE} tokens for one response` };
  }
  return value;
}

function section(parent: Record<string, unknown>, field: string, path: string): Record<string, unknown> | Problem {
  const value = parent[field];
  if (value === undefined || value === null) return {};
  if (typeof value !== 'object' || Array.isArray(value)) return { problem: `usage.${path}${field} is not an object` };
  return value as Record<string, unknown>;
}

const isProblem = (value: unknown): value is Problem => typeof value === 'object' && value !== null && 'problem' in value;

/**
 * Splits a response's usage into the kinds that have a price. Counts OpenAI does not attribute to a
 * kind (a total larger than its details) are charged at the dearest rate, and cached counts larger
 * than their kind's input are capped at it: inconsistent usage is never cheaper than consistent usage.
 */
function tokenCounts(usage: unknown, prices: PicoPrices): TokenCounts | Problem {
  if (usage === undefined || usage === null) return { problem: 'no usage in the response' };
  if (typeof usage !== 'object' || Array.isArray(usage)) return { problem: 'usage is not an object' };
  const root = usage as Record<string, unknown>;
  const inputDetails = section(root, 'input_token_details', '');
  if (isProblem(inputDetails)) return inputDetails;
  const cachedDetails = section(inputDetails, 'cached_tokens_details', 'input_token_details.');
  if (isProblem(cachedDetails)) return cachedDetails;
  const outputDetails = section(root, 'output_token_details', '');
  if (isProblem(outputDetails)) return outputDetails;

  const fields: [Record<string, unknown>, string, string][] = [
    [root, 'total_tokens', ''],
    [root, 'input_tokens', ''],
    [root, 'output_tokens', ''],
    [inputDetails, 'text_tokens', 'input_token_details.'],
    [inputDetails, 'audio_tokens', 'input_token_details.'],
    [inputDetails, 'image_tokens', 'input_token_details.'],
    [inputDetails, 'cached_tokens', 'input_token_details.'],
    [cachedDetails, 'text_tokens', 'input_token_details.cached_tokens_details.'],
    [cachedDetails, 'audio_tokens', 'input_token_details.cached_tokens_details.'],
    [cachedDetails, 'image_tokens', 'input_token_details.cached_tokens_details.'],
    [outputDetails, 'text_tokens', 'output_token_details.'],
    [outputDetails, 'audio_tokens', 'output_token_details.'],
  ];
  const n: number[] = [];
  for (const [parent, field, path] of fields) {
    const value = tokenCount(parent, field, path);
    if (isProblem(value)) return value;
    n.push(value);
  }
  const [, input, output, inText, inAudio, inImage, , cText, cAudio, cImage, outText, outAudio] = n as [
    number, number, number, number, number, number, number, number, number, number, number, number,
  ];

  const cachedText = Math.min(cText, inText);
  const cachedAudio = Math.min(cAudio, inAudio);
  const cachedImage = Math.min(cImage, inImage);
  const tokens: TokenCounts = {
    text_input: inText - cachedText,
    text_cached_input: cachedText,
    text_output: outText,
    audio_input: inAudio - cachedAudio,
    audio_cached_input: cachedAudio,
    audio_output: outAudio,
    image_input: inImage - cachedImage,
    image_cached_input: cachedImage,
  };
  const unattributedInput = input - (inText + inAudio + inImage);
  if (unattributedInput > 0) tokens[dearest(prices, ['text_input', 'audio_input', 'image_input'])] += unattributedInput;
  const unattributedOutput = output - (outText + outAudio);
  if (unattributedOutput > 0) tokens[dearest(prices, ['text_output', 'audio_output'])] += unattributedOutput;
  return tokens;
}

function dearest(prices: PicoPrices, kinds: readonly Kind[]): Kind {
  let best = kinds[0] as Kind;
  for (const kind of kinds) if (prices[kind] > prices[best]) best = kind;
  return best;
}

/** The price table (built in, plus REALTIME_PRICES) and the exact cost of a response's usage. */
export class Pricing {
  private readonly table = new Map<string, PicoPrices>();

  constructor(overrides: Readonly<Record<string, TokenPrices>> = {}) {
    for (const [model, prices] of Object.entries({ ...BUILT_IN_PRICES, ...overrides })) {
      this.table.set(model, picoPrices(prices));
    }
  }

  has(model: string): boolean {
    return this.table.has(model);
  }

  /**
   * The cost of one response.done usage: undefined when the model has no price; `{problem}` (never a
   * throw, never NaN) when the usage is missing, not an object, or has a count that is negative, not
   * whole, or over MAX_TOKENS_PER_RESPONSE.
   */
  price(model: string, usage: unknown): PricedUsage | Problem | undefined {
    const prices = this.table.get(model);
    if (!prices) return undefined;
    const tokens = tokenCounts(usage, prices);
    if (isProblem(tokens)) return tokens;
    let pico = 0n;
    for (const kind of TOKEN_KINDS) pico += BigInt(tokens[kind]) * prices[kind];
    // Whole nano-dollars, rounded up: exact for every price with at most 3 decimals (all of OpenAI's).
    const costNanoUsd = Number((pico + 999n) / 1000n);
    return { tokens, costNanoUsd, costUsd: costNanoUsd / 1e9 };
  }
}
