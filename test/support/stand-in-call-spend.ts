import type { Redis } from 'ioredis';
import type { CallSpend, PricedUsage, TokenCounts } from '../../src/realtime/call-spend.js';

/*
 * A STAND-IN for helper ledger's CallSpend (src/usage/spend.ts), for the call manager's tests while
 * that is not merged: real arithmetic and real counting (in memory, or in a real Redis shared by
 * replicas), but no day window, no failover and a one-model price table. Not the product's ledger.
 */

/** USD per 1M tokens (SPEC.md "Prices", gpt-realtime). */
export const STAND_IN_PRICES: Record<string, TokenCounts> = {
  'gpt-realtime': { text_input: 4, text_cached_input: 0.4, text_output: 16, audio_input: 32, audio_cached_input: 0.4, audio_output: 64 },
};

type Json = Record<string, unknown>;
const isRecord = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);
const count = (node: unknown, key: string): number | undefined => {
  const value = isRecord(node) ? node[key] : 0;
  if (value === undefined) return 0;
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0 ? value : undefined;
};

/** response.usage -> tokens by kind and integer nano-dollars; undefined for garbage or an unknown model. */
export function standInPrice(model: string, usage: unknown): PricedUsage | undefined {
  const prices = STAND_IN_PRICES[model];
  if (!prices || !isRecord(usage)) return undefined;
  const input = usage.input_token_details;
  const cached = isRecord(input) ? input.cached_tokens_details : undefined;
  const output = usage.output_token_details;
  const raw = {
    text: count(input, 'text_tokens'),
    audio: count(input, 'audio_tokens'),
    textCached: count(cached, 'text_tokens'),
    audioCached: count(cached, 'audio_tokens'),
    textOut: count(output, 'text_tokens'),
    audioOut: count(output, 'audio_tokens'),
  };
  if (Object.values(raw).some((value) => value === undefined)) return undefined;
  const r = raw as Record<keyof typeof raw, number>;
  if (r.textCached > r.text || r.audioCached > r.audio) return undefined;
  const tokens: TokenCounts = {
    text_input: r.text - r.textCached,
    text_cached_input: r.textCached,
    text_output: r.textOut,
    audio_input: r.audio - r.audioCached,
    audio_cached_input: r.audioCached,
    audio_output: r.audioOut,
  };
  // USD per 1M tokens = 1,000 nano-dollars per token per dollar of price.
  let costNanoUsd = 0;
  for (const kind of Object.keys(tokens) as (keyof TokenCounts)[]) costNanoUsd += Math.round(tokens[kind] * prices[kind] * 1000);
  return { tokens, costNanoUsd, costUsd: costNanoUsd / 1e9 };
}

export interface StandInCaps {
  clientCapUsd?: number;
  globalCapUsd?: number;
}

/** Spend counted in this process. */
export class InMemoryStandInCallSpend implements CallSpend {
  readonly enforcing: boolean;
  readonly charged: { clientKey: string; model: string; priced: PricedUsage | undefined }[] = [];
  private readonly spent = new Map<string, number>();
  private global = 0;

  constructor(private readonly caps: StandInCaps) {
    this.enforcing = caps.clientCapUsd !== undefined || caps.globalCapUsd !== undefined;
  }

  spentUsd(clientKey: string): number {
    return (this.spent.get(clientKey) ?? 0) / 1e9;
  }

  async charge(clientKey: string, model: string, usage: unknown) {
    const priced = standInPrice(model, usage);
    this.charged.push({ clientKey, model, priced });
    if (priced) {
      this.spent.set(clientKey, (this.spent.get(clientKey) ?? 0) + priced.costNanoUsd);
      this.global += priced.costNanoUsd;
    }
    return { priced, capped: verdict(this.caps, this.spent.get(clientKey) ?? 0, this.global) };
  }

  async capped(clientKeys: readonly string[]) {
    const { clientCapUsd, globalCapUsd } = this.caps;
    const clients = new Set(clientKeys.filter((key) => clientCapUsd !== undefined && (this.spent.get(key) ?? 0) >= clientCapUsd * 1e9));
    return { global: globalCapUsd !== undefined && this.global >= globalCapUsd * 1e9, clients };
  }
}

/** Spend counted in a real Redis (INCRBY of nano-dollars), shared by every app pointed at it. */
export class RedisStandInCallSpend implements CallSpend {
  readonly enforcing: boolean;

  constructor(
    private readonly redis: Redis,
    private readonly caps: StandInCaps,
  ) {
    this.enforcing = caps.clientCapUsd !== undefined || caps.globalCapUsd !== undefined;
  }

  async charge(clientKey: string, model: string, usage: unknown) {
    const priced = standInPrice(model, usage);
    const cost = priced?.costNanoUsd ?? 0;
    const [client, global] = (await this.redis.multi().incrby(clientSpendKey(clientKey), cost).incrby(GLOBAL_KEY, cost).exec()) ?? [];
    return { priced, capped: verdict(this.caps, Number(client?.[1] ?? 0), Number(global?.[1] ?? 0)) };
  }

  async capped(clientKeys: readonly string[]) {
    const { clientCapUsd, globalCapUsd } = this.caps;
    const values = await this.redis.mget(GLOBAL_KEY, ...clientKeys.map(clientSpendKey));
    const clients = new Set(clientKeys.filter((_key, i) => clientCapUsd !== undefined && Number(values[i + 1] ?? 0) >= clientCapUsd * 1e9));
    return { global: globalCapUsd !== undefined && Number(values[0] ?? 0) >= globalCapUsd * 1e9, clients };
  }
}

const GLOBAL_KEY = 'stand-in-spend:global';
const clientSpendKey = (clientKey: string) => `stand-in-spend:client:${clientKey}`;

function verdict(caps: StandInCaps, clientNano: number, globalNano: number): 'client' | 'global' | undefined {
  if (caps.globalCapUsd !== undefined && globalNano >= caps.globalCapUsd * 1e9) return 'global';
  if (caps.clientCapUsd !== undefined && clientNano >= caps.clientCapUsd * 1e9) return 'client';
  return undefined;
}
