import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { useFakeOpenAI } from '../support/app.js';
import {
  DASHBOARD_FILE,
  RULES_FILE,
  exportedMetricNames,
  expectedMetricNames,
  grafanaVariableQuery,
  metricNamesIn,
  pendingMetricNames,
  withoutGrafanaVariables,
} from '../support/monitoring.js';

interface Panel {
  title?: string;
  targets?: { expr?: string }[];
  panels?: Panel[];
}
interface Dashboard {
  panels: Panel[];
  templating: { list: { name: string; type: string; query?: string | { query?: string } }[] };
}

const dashboard = JSON.parse(readFileSync(DASHBOARD_FILE, 'utf8')) as Dashboard;

/** Every PromQL query of the dashboard: panel targets (rows included) and variable queries. */
function dashboardQueries(): { where: string; expr: string }[] {
  const queries: { where: string; expr: string }[] = [];
  const walk = (panels: Panel[]) => {
    for (const panel of panels) {
      for (const target of panel.targets ?? []) {
        if (target.expr) queries.push({ where: `panel "${panel.title}"`, expr: withoutGrafanaVariables(target.expr) });
      }
      walk(panel.panels ?? []);
    }
  };
  walk(dashboard.panels);
  for (const variable of dashboard.templating.list.filter((v) => v.type === 'query')) {
    const raw = typeof variable.query === 'string' ? variable.query : variable.query?.query;
    if (raw) queries.push({ where: `variable $${variable.name}`, expr: withoutGrafanaVariables(grafanaVariableQuery(raw)) });
  }
  return queries;
}

const ruleQueries = (parse(readFileSync(RULES_FILE, 'utf8')) as { groups: { rules: { alert: string; expr: string }[] }[] }).groups
  .flatMap((g) => g.rules)
  .map((r) => ({ where: `alert ${r.alert}`, expr: r.expr }));

const openai = useFakeOpenAI();

describe('the Grafana dashboard and the alert rules against a live /metrics', () => {
  async function scrape(): Promise<Set<string>> {
    // Every optional part on, so each metric it owns is registered: pool, budgets, spend caps.
    const t = await openai.app({
      TOKEN_POOL_SIZE: '1',
      GLOBAL_MINTS_PER_MINUTE: '100',
      GLOBAL_MINTS_PER_DAY: '1000',
      SPEND_PER_CLIENT_PER_DAY_USD: '5',
      GLOBAL_SPEND_PER_DAY_USD: '50',
    });
    const base = await t.app.listen({ port: 0, host: '127.0.0.1' });
    const response = await fetch(`${base}/metrics`);
    expect(response.status).toBe(200);
    return exportedMetricNames(await response.text());
  }

  it('the service exports every metric INTERFACES.md lists', async () => {
    const exported = await scrape();
    const missing = expectedMetricNames().filter((name) => !exported.has(name));
    expect(missing, `not exported by /metrics: ${missing.join(', ')}`).toEqual([]);
  });

  it('every dashboard query parses as PromQL and names only exported metrics', async () => {
    const exported = await scrape();
    const queries = dashboardQueries();
    expect(queries.length).toBeGreaterThan(20);
    const pending = new Set(pendingMetricNames());
    const unknown: string[] = [];
    for (const { where, expr } of queries) {
      const names = metricNamesIn(expr);
      expect(names.length, `${where} selects no metric: ${expr}`).toBeGreaterThan(0);
      for (const name of names) if (!exported.has(name) && !pending.has(name)) unknown.push(`${where}: ${name}`);
    }
    expect(unknown).toEqual([]);
  });

  it('every alert rule names only exported metrics', async () => {
    const exported = await scrape();
    const pending = new Set(pendingMetricNames());
    const unknown: string[] = [];
    for (const { where, expr } of ruleQueries) {
      for (const name of metricNamesIn(expr)) if (!exported.has(name) && !pending.has(name)) unknown.push(`${where}: ${name}`);
    }
    expect(unknown).toEqual([]);
  });

  it('the name reader finds what it must (a check of the check)', () => {
    expect(metricNamesIn('histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="y"}[5m]))) / on(job) group_left max(b) and c offset 5m')).toEqual([
      'a_bucket',
      'b',
      'c',
    ]);
    expect(() => metricNamesIn('sum(rate(a[5m])')).toThrow(/syntax error/);
    expect(exportedMetricNames('# HELP h x\n# TYPE h histogram\nh_bucket{le="1"} 0\n# TYPE c counter\nc 1\n')).toEqual(
      new Set(['h', 'h_bucket', 'h_sum', 'h_count', 'c']),
    );
  });
});
