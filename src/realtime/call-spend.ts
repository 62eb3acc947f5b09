/*
 * What the call manager needs from money. The shapes are INTERFACES.md's: helper ledger implements
 * them in src/usage/ (pricing.ts, spend.ts). Declared here so the call manager compiles on its own;
 * once src/usage/spend.ts is merged this file can re-export its types instead.
 */

/** Tokens by kind; input apart from cached input. */
export interface TokenCounts {
  text_input: number;
  text_cached_input: number;
  text_output: number;
  audio_input: number;
  audio_cached_input: number;
  audio_output: number;
}

export interface PricedUsage {
  tokens: TokenCounts;
  /** Integer nano-dollars (1e-9 USD). */
  costNanoUsd: number;
  costUsd: number;
}

export interface CallSpend {
  /** A spend cap is on (SPEND_PER_CLIENT_PER_DAY_USD or GLOBAL_SPEND_PER_DAY_USD): sidebands fail closed. */
  readonly enforcing: boolean;
  /** Prices one response.done usage of a call and charges client and global windows. */
  charge(clientKey: string, model: string, usage: unknown): Promise<{ priced?: PricedUsage; capped: 'client' | 'global' | undefined }>;
  /** Of these clients, which are at or over their cap now; and whether the global cap is reached. */
  capped(clientKeys: readonly string[]): Promise<{ global: boolean; clients: ReadonlySet<string> }>;
}

export const TOKEN_KINDS = ['text_input', 'text_cached_input', 'text_output', 'audio_input', 'audio_cached_input', 'audio_output'] as const;

export function noTokens(): TokenCounts {
  return { text_input: 0, text_cached_input: 0, text_output: 0, audio_input: 0, audio_cached_input: 0, audio_output: 0 };
}

/** No caps: usage is still read (for the audit line and the lock), nothing is charged or refused. */
export const NO_SPEND_CAPS: CallSpend = {
  enforcing: false,
  charge: async () => ({ capped: undefined }),
  capped: async () => ({ global: false, clients: new Set<string>() }),
};
