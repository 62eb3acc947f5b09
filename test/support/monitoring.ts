import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parser } from '@prometheus-io/lezer-promql';

export const MONITORING_DIR = fileURLToPath(new URL('../../deploy/monitoring/', import.meta.url));
export const RULES_FILE = `${MONITORING_DIR}parker-token-alerts.yml`;
export const RULES_TEST_FILE = `${MONITORING_DIR}parker-token-alerts.test.yml`;
export const DASHBOARD_FILE = `${MONITORING_DIR}parker-token-dashboard.json`;

const srcExists = (path: string) => existsSync(fileURLToPath(new URL(`../../src/${path}`, import.meta.url)));

/**
 * The metrics the service must export (INTERFACES.md, "Metrics names"). Those of a part another
 * branch brings (the usage ledger, the call sideband) are expected as soon as that part's module is
 * in the tree, so a merge that forgets to wire them fails here instead of leaving dashboard panels empty.
 */
export function expectedMetricNames(): string[] {
  const names = [
    'realtime_token_mints_total',
    'realtime_token_refusals_total',
    'openai_request_duration_seconds',
    'realtime_calls_started_total',
    'realtime_calls_ended_total',
    'realtime_call_hangup_failures_total',
    'realtime_calls_active',
    'realtime_budget_used',
    'realtime_budget_limit',
    'log_lines_dropped_total',
    'circuit_breaker_state',
    'rate_limit_store_mode',
    'token_pool_size',
    'token_pool_requests_total',
    'realtime_ready',
  ];
  if (srcExists('usage/ledger.ts')) names.push('realtime_spend_usd_total', 'realtime_spend_window_usd', 'realtime_spend_limit_usd');
  if (srcExists('realtime/sideband.ts')) {
    names.push('realtime_sideband_total', 'realtime_session_lock_corrections_total', 'realtime_sideband_open');
  }
  return names;
}

/** Names that a part of another branch will export, while that part is not yet in the tree. */
export function pendingMetricNames(): string[] {
  const pending: string[] = [];
  if (!srcExists('usage/ledger.ts')) pending.push('realtime_spend_usd_total', 'realtime_spend_window_usd', 'realtime_spend_limit_usd');
  if (!srcExists('realtime/sideband.ts')) {
    pending.push('realtime_sideband_total', 'realtime_session_lock_corrections_total', 'realtime_sideband_open');
  }
  return pending;
}

/** Grafana's variables, replaced by values PromQL accepts. */
export function withoutGrafanaVariables(query: string): string {
  return query
    .replaceAll('$__rate_interval', '5m')
    .replaceAll('$__interval', '1m')
    .replaceAll('$__range', '1h')
    .replace(/\$\{?[A-Za-z_]\w*\}?/g, 'x');
}

/** `label_values(metric, label)` (a Grafana variable's query) as the PromQL selector it reads. */
export function grafanaVariableQuery(query: string): string {
  const labelValues = /^\s*label_values\((.+),\s*\w+\)\s*$/.exec(query);
  return labelValues?.[1] ?? query;
}

/**
 * The metric names a PromQL expression selects, read with Prometheus's own grammar; throws on a
 * syntax error.
 */
export function metricNamesIn(expression: string): string[] {
  const tree = parser.parse(expression);
  const names = new Set<string>();
  let error: number | undefined;
  tree.iterate({
    enter(node) {
      if (node.type.isError) error ??= node.from;
      if (node.name === 'VectorSelector') {
        const identifier = node.node.getChild('Identifier');
        if (identifier) names.add(expression.slice(identifier.from, identifier.to));
      }
    },
  });
  if (error !== undefined) throw new Error(`PromQL syntax error at ${error} in: ${expression}`);
  return [...names];
}

/** Every series name a Prometheus text exposition can carry (histograms: _bucket, _sum, _count). */
export function exportedMetricNames(exposition: string): Set<string> {
  const names = new Set<string>();
  for (const line of exposition.split('\n')) {
    const declared = /^# TYPE (\S+) (\S+)/.exec(line);
    if (declared) {
      const [, name = '', type] = declared;
      names.add(name);
      if (type === 'histogram' || type === 'summary') {
        for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`);
      }
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]/.exec(line);
    if (sample?.[1]) names.add(sample[1]);
  }
  return names;
}
