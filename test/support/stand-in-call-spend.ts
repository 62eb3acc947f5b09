import type { CallSpend } from '../../src/realtime/call-spend.js';
import { Pricing, type PricedUsage } from '../../src/usage/pricing.js';

/*
 * A CallSpend that records every charge, for the call manager's own tests (what was charged, in
 * order): the product's pricing, counted in this process, no day window. Tests of caps across
 * replicas use the product's ledger itself (test/redis/calls-spend-*.test.ts).
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



function verdict(caps: StandInCaps, clientNano: number, globalNano: number): 'client' | 'global' | undefined {
  if (caps.globalCapUsd !== undefined && globalNano >= caps.globalCapUsd * 1e9) return 'global';
  if (caps.clientCapUsd !== undefined && clientNano >= caps.clientCapUsd * 1e9) return 'client';
  return undefined;
}
