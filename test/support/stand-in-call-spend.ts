import type { Redis } from 'ioredis';
import type { CallSpend } from '../../src/realtime/call-spend.js';
import { Pricing, type PricedUsage } from '../../src/usage/pricing.js';

/*
 * A STAND-IN for helper ledger's CallSpend (src/usage/spend.ts), for the call manager's tests while
 * that is not merged: real arithmetic and real counting (in memory, or in a real Redis shared by
 * replicas) with the product's pricing, but no day window and no failover. Not the product's ledger.
 */

const pricing = new Pricing();

/** response.usage -> tokens by kind and integer nano-dollars, by the product's own pricing; undefined for garbage or an unknown model. */
export function standInPrice(model: string, usage: unknown): PricedUsage | undefined {
  const priced = pricing.price(model, usage);
  return priced && 'tokens' in priced ? priced : undefined;
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
