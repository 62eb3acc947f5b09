import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { requireCommand } from '../support/commands.js';
import { MONITORING_DIR, RULES_FILE, RULES_TEST_FILE } from '../support/monitoring.js';

const run = promisify(execFile);

// promtool comes with Debian's `prometheus` package.
requireCommand('promtool', 'apt-get install prometheus');

async function promtool(...args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await run('promtool', args, { cwd: MONITORING_DIR });
    return { code: 0, output: stdout + stderr };
  } catch (error) {
    const failure = error as { code?: number; stdout?: string; stderr?: string };
    return { code: failure.code ?? -1, output: `${failure.stdout ?? ''}${failure.stderr ?? ''}` };
  }
}

interface AlertRule {
  alert: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface RuleTest {
  alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[];
}

const rules = (parse(readFileSync(RULES_FILE, 'utf8')) as { groups: { name: string; rules: AlertRule[] }[] }).groups.flatMap((g) => g.rules);
const ruleTests = (parse(readFileSync(RULES_TEST_FILE, 'utf8')) as { tests: RuleTest[] }).tests.flatMap((t) => t.alert_rule_test ?? []);

describe('deploy/monitoring alerting rules', () => {
  it('pass `promtool check rules`', async () => {
    const { code, output } = await promtool('check', 'rules', RULES_FILE);
    expect(output).toContain(`SUCCESS: ${rules.length} rules found`);
    expect(code).toBe(0);
  });

  it('pass their unit tests (`promtool test rules`): each alert firing and staying quiet', async () => {
    const { code, output } = await promtool('test', 'rules', RULES_TEST_FILE);
    expect(output).toContain('SUCCESS');
    expect(output).not.toContain('FAILED');
    expect(code).toBe(0);
  });

  it('cover what an operator must hear about', () => {
    const names = rules.map((r) => r.alert);
    for (const name of [
      'ParkerTokenMintBudgetNearlySpent',
      'ParkerTokenMintBudgetSpent',
      'ParkerTokenSpendCapNearlyReached',
      'ParkerTokenSpendCapReached',
      'ParkerTokenSpendBurnRateHigh',
      'ParkerTokenCircuitBreakerOpen',
      'ParkerTokenNotReady',
      'ParkerTokenCallHangupFailing',
      'ParkerTokenSidebandFailing',
      'ParkerTokenLogLinesDropped',
    ]) {
      expect(names).toContain(name);
    }
  });

  it('follow the monitoring-mixin conventions: one CamelCase prefix, a severity, summary and description', () => {
    expect(rules.length).toBeGreaterThan(0);
    for (const rule of rules) {
      expect(rule.alert).toMatch(/^ParkerToken[A-Z][A-Za-z0-9]+$/);
      expect(['critical', 'warning', 'info']).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary?.trim()).toBeTruthy();
      expect(rule.annotations?.description?.trim()).toBeTruthy();
    }
    expect(new Set(rules.map((r) => r.alert)).size).toBe(rules.length);
  });

  it('every alert has a unit test where it fires and one where it stays quiet', () => {
    for (const rule of rules) {
      const cases = ruleTests.filter((t) => t.alertname === rule.alert);
      expect(cases.some((t) => (t.exp_alerts ?? []).length > 0), `${rule.alert} never fires in a test`).toBe(true);
      expect(cases.some((t) => (t.exp_alerts ?? []).length === 0), `${rule.alert} is never shown quiet`).toBe(true);
    }
  });
});
