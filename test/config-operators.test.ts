import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { bootSummary, bootWarnings } from '../src/boot-summary.js';
import { loadConfig } from '../src/config.js';
import { nodeTooOld, REQUIRED_NODE_MAJOR } from '../src/node-guard.js';
import { useFakeOpenAI } from './support/app.js';
import { BASE_ENV, problemsOf } from './support/config.js';

const base = BASE_ENV;
const TOKEN = 'operator-token-0123456789abcdefghijkl';

describe('half-set settings refuse to boot, by name', () => {
  it('AUTH_ISSUER or AUTH_AUDIENCE without AUTH_JWKS_URL or AUTH_JWT_SECRET (they would check nothing)', () => {
    expect(problemsOf({ ...base, AUTH_ISSUER: 'https://issuer.example' })).toMatch(
      /AUTH_ISSUER checks nothing while caller authentication is off: set AUTH_JWKS_URL or AUTH_JWT_SECRET/,
    );
    expect(problemsOf({ ...base, AUTH_AUDIENCE: 'parker' })).toMatch(/AUTH_AUDIENCE checks nothing/);
    const both = problemsOf({ ...base, AUTH_ISSUER: 'https://issuer.example', AUTH_AUDIENCE: 'parker' });
    expect(both).toMatch(/AUTH_ISSUER/);
    expect(both).toMatch(/AUTH_AUDIENCE/);
    // with a verifier they are what they should be
    const config = loadConfig({ ...base, AUTH_ISSUER: 'https://issuer.example', AUTH_AUDIENCE: 'parker', AUTH_JWKS_URL: 'https://issuer.example/jwks.json' });
    expect(config).toMatchObject({ authEnabled: true, authIssuer: 'https://issuer.example', authAudience: ['parker'] });
    expect(loadConfig({ ...base, AUTH_ISSUER: 'x', AUTH_JWT_SECRET: 'a-shared-secret-of-at-least-32-bytes!!' }).authEnabled).toBe(true);
  });

  it('METRICS_PORT equal to PORT, or metrics settings with METRICS_ENABLED=false', () => {
    expect(problemsOf({ ...base, PORT: '9100', METRICS_PORT: '9100' })).toMatch(/METRICS_PORT must differ from PORT/);
    expect(problemsOf({ ...base, METRICS_PORT: '8000' })).toMatch(/METRICS_PORT must differ from PORT/);
    expect(problemsOf({ ...base, METRICS_ENABLED: 'false', METRICS_PORT: '9464' })).toMatch(/METRICS_PORT is set but METRICS_ENABLED=false/);
    expect(problemsOf({ ...base, METRICS_ENABLED: 'false', METRICS_TOKEN: TOKEN })).toMatch(/METRICS_TOKEN is set but METRICS_ENABLED=false/);
    expect(problemsOf({ ...base, METRICS_PORT: '0' })).toMatch(/METRICS_PORT must be a whole number from 1 to 65535/);
    expect(loadConfig({ ...base, METRICS_PORT: '9464', METRICS_TOKEN: TOKEN })).toMatchObject({ metricsPort: 9464, metricsToken: TOKEN });
  });

  it('operator tokens: at least 32 characters, no whitespace, and never echoed', () => {
    for (const name of ['ADMIN_TOKEN', 'METRICS_TOKEN']) {
      const short = problemsOf({ ...base, [name]: 'short-but-secret-value' });
      expect(short).toMatch(new RegExp(`${name} must be at least 32 characters`));
      expect(short).not.toContain('short-but-secret-value');
      const spaced = `${TOKEN} with spaces`;
      const message = problemsOf({ ...base, [name]: spaced, PORT: 'eighty' });
      expect(message).toMatch(new RegExp(`${name} must not contain whitespace`));
      expect(message).not.toContain(TOKEN);
    }
    expect(loadConfig({ ...base, ADMIN_TOKEN: TOKEN }).adminToken).toBe(TOKEN);
    expect(loadConfig(base)).toMatchObject({ adminToken: undefined, metricsToken: undefined, metricsPort: undefined });
  });
});

describe('the boot summary', () => {
  it('says what is on, in fields, without a secret', () => {
    const summary = bootSummary(
      loadConfig({
        ...base,
        AUTH_JWT_SECRET: 'a-shared-secret-of-at-least-32-bytes!!',
        AUTH_ISSUER: 'https://issuer.example',
        REDIS_URL: 'redis://:hunter2-password@redis.internal:6379',
        GLOBAL_MINTS_PER_DAY: '5000',
        MINTS_PER_CLIENT_PER_DAY: '0',
        TOKEN_POOL_SIZE: '4',
        ALLOWED_ORIGINS: 'https://www.espn.com,chrome-extension://abcdefghijklmnopabcdefghijklmnop',
        METRICS_TOKEN: TOKEN,
        ADMIN_TOKEN: TOKEN,
      }),
    );
    expect(summary).toMatchObject({
      auth: 'hs256',
      auth_issuer: 'https://issuer.example',
      store: 'redis',
      quotas: { per_minute: 10, burst_per_second: null, per_client_per_day: null },
      budgets: { global_per_minute: null, global_per_day: 5000 },
      spend_caps_usd: { per_client_per_day: null, global_per_day: null },
      pool: { size: 4, mode: 'demand' },
      origins: 2,
      metrics: 'token',
      admin: 'on',
    });
    const text = JSON.stringify(summary);
    for (const secret of ['hunter2', 'a-shared-secret', TOKEN, base.OPENAI_API_KEY]) expect(text).not.toContain(secret);
  });

  it('defaults: memory, auth off, pool off, metrics public (warned), admin off, no daily budget (warned)', () => {
    const config = loadConfig(base);
    expect(bootSummary(config)).toMatchObject({ auth: 'off', store: 'memory', pool: 'off', metrics: 'public', admin: 'off', origins: 1 });
    const warnings = bootWarnings(config);
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/^no GLOBAL_MINTS_PER_DAY/);
    expect(warnings[1]).toMatch(/^\/metrics is public on PORT with no token: set METRICS_TOKEN .* or METRICS_PORT/);
    expect(bootWarnings(loadConfig({ ...base, GLOBAL_MINTS_PER_DAY: '10', METRICS_PORT: '9464' }))).toEqual([]);
    expect(bootWarnings(loadConfig({ ...base, GLOBAL_MINTS_PER_DAY: '10', METRICS_ENABLED: 'false' }))).toEqual([]);
  });

  const openai = useFakeOpenAI();

  it('is one info line at boot ("service configured"), before the warnings', async () => {
    const t = await openai.app({ ADMIN_TOKEN: TOKEN });
    const lines = t.logs.lines;
    const summaries = lines.filter((l) => l.msg === 'service configured');
    expect(summaries).toHaveLength(1);
    expect(summaries[0]).toMatchObject({ level: 'info', auth: 'off', store: 'memory', admin: 'on', metrics: 'public' });
    const at = lines.indexOf(summaries[0] as Record<string, unknown>);
    expect(lines.findIndex((l) => String(l.msg).startsWith('/metrics is public'))).toBeGreaterThan(at);
    expect(t.logs.raw).not.toContain(TOKEN);
  });
});

describe('the Node check', () => {
  it('lets Node 24 and later through, and stops anything older with how to get Node 24', () => {
    expect(nodeTooOld('24.0.0')).toBeUndefined();
    expect(nodeTooOld('24.21.0')).toBeUndefined();
    expect(nodeTooOld('26.1.0')).toBeUndefined();
    const message = nodeTooOld('20.20.2');
    expect(message).toMatch(/needs Node 24 or newer, and this is Node 20\.20\.2/);
    expect(message).toMatch(/nvm install/);
    expect(message).not.toContain('\n');
    expect(nodeTooOld('garbage')).toMatch(/needs Node 24/);
  });

  it('asks for the same major as package.json engines and .nvmrc', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { engines: { node: string } };
    expect(pkg.engines.node).toBe(`>=${REQUIRED_NODE_MAJOR}`);
    expect(readFileSync(new URL('../.nvmrc', import.meta.url), 'utf8').trim()).toBe(String(REQUIRED_NODE_MAJOR));
  });
});
