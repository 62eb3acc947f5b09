/** What /admin/usage answers: the usage ledger's report (INTERFACES.md), snake_case as sent. */
export type { UsageReport } from '../usage/spend.js';
