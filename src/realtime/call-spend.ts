import type { PricedUsage } from '../usage/pricing.js';

/** What the call manager needs from money: src/usage/spend.ts (pricing and the ledger) implements it. */
export interface CallSpend {
  /** A spend cap is on (SPEND_PER_CLIENT_PER_DAY_USD or GLOBAL_SPEND_PER_DAY_USD): sidebands fail closed. */
  readonly enforcing: boolean;
  /** Prices one response.done usage of a call and charges client and global windows. */
  charge(clientKey: string, model: string, usage: unknown): Promise<{ priced?: PricedUsage; capped: 'client' | 'global' | undefined }>;
  /** Of these clients, which are at or over their cap now; and whether the global cap is reached. */
  capped(clientKeys: readonly string[]): Promise<{ global: boolean; clients: ReadonlySet<string> }>;
}

/** No caps: usage is still read (for the audit line and the lock), nothing is charged or refused. */
export const NO_SPEND_CAPS: CallSpend = {
  enforcing: false,
  charge: async () => ({ capped: undefined }),
  capped: async () => ({ global: false, clients: new Set<string>() }),
};
