import { z } from 'zod';

/** What /admin/usage answers: the usage ledger's report (INTERFACES.md), snake_case as sent. */
export type { UsageReport } from '../usage/spend.js';

const count = z.number().int().min(0);
const usd = z.number().min(0).describe('US dollars');

/** The report as the OpenAPI document describes it (the contract test holds the answers to it). */
export const usageReportSchema = z
  .object({
    window_seconds: z.literal(86400).describe('Every window is 24 h from its first counted mint, as the daily quota.'),
    store: z.enum(['memory', 'redis', 'fallback']).describe('Where the windows are counted: this process, Redis (every replica), or this process while Redis is down.'),
    global: z.object({
      mints: count,
      spend_usd: usd,
      mints_limit: count.nullable().describe('GLOBAL_MINTS_PER_DAY, null when off.'),
      spend_limit_usd: usd.nullable().describe('GLOBAL_SPEND_PER_DAY_USD, null when off.'),
      resets_at: z.string().nullable().describe('ISO 8601; null before the first mint of the window.'),
    }),
    clients: z
      .array(
        z.object({
          client: z.string().describe('What the limits key on: `user:<sub>` with caller authentication, else `ip:<address>`.'),
          mints: count,
          spend_usd: usd,
          active_calls: count,
          resets_at: z.string().describe('ISO 8601'),
        }),
      )
      .describe('The top 100 by spend, then mints.'),
    hourly: z
      .array(z.object({ hour: z.string().describe('ISO 8601, the start of the hour'), mints: count, spend_usd: usd, refusals: z.record(z.string(), count) }))
      .describe('The last 24 h, oldest first: mints, spend and refusals by reason.'),
  })
  .describe('Mints, spend and active calls per client and for the whole service, in the current windows.');
