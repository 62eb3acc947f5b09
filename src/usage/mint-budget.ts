import type { Config } from '../config.js';

export interface BudgetWindow {
  window: 'minute' | 'day';
  limit: number;
  used: number;
  /** Wall-clock ms when the window turns, as last seen. */
  resetAt: number;
  /** resetAt of the window whose 80 % warning was logged. */
  warnedFor: number;
}

/**
 * The whole service's budget of mints (GLOBAL_MINTS_PER_MINUTE / _PER_DAY), counted across replicas
 * when the store is Redis. Also read by the warm pool (no refills while spent) and by /metrics.
 */
export class MintBudget {
  readonly windows: BudgetWindow[];

  constructor(config: Pick<Config, 'globalMintsPerMinute' | 'globalMintsPerDay'>) {
    const windows: BudgetWindow[] = [];
    if (config.globalMintsPerMinute !== undefined) windows.push(budgetWindow('minute', config.globalMintsPerMinute));
    if (config.globalMintsPerDay !== undefined) windows.push(budgetWindow('day', config.globalMintsPerDay));
    this.windows = windows;
  }

  /** Milliseconds until a mint fits in the budget again (0: it fits now, as far as this replica saw). */
  waitMs(): number {
    let wait = 0;
    for (const w of this.windows) {
      if (w.used >= w.limit) wait = Math.max(wait, w.resetAt - Date.now());
    }
    return Math.max(0, wait);
  }
}

function budgetWindow(window: 'minute' | 'day', limit: number): BudgetWindow {
  return { window, limit, used: 0, resetAt: 0, warnedFor: 0 };
}

