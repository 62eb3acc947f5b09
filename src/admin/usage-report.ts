/**
 * What /admin/usage answers (INTERFACES.md: the usage ledger's UsageReport, snake_case as sent).
 * The ledger (src/usage/ledger.ts) exports the same shape; this copy lets the admin plugin stand
 * before it is merged, and can give way to an import of it then.
 */
export interface UsageReport {
  window_seconds: 86400;
  store: 'memory' | 'redis' | 'fallback';
  global: {
    mints: number;
    spend_usd: number;
    mints_limit: number | null;
    spend_limit_usd: number | null;
    resets_at: string | null;
  };
  /** The top 100 by spend, then mints. */
  clients: { client: string; mints: number; spend_usd: number; active_calls: number; resets_at: string }[];
  /** The last 24 h, oldest first; `hour` is the ISO start of the hour. */
  hourly: { hour: string; mints: number; spend_usd: number; refusals: Record<string, number> }[];
}
