import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ENV_VARIABLES, loadConfig, parseList } from '../src/config.js';
import { BASE_ENV, problemsOf } from './support/config.js';

const base = BASE_ENV;

describe('loadConfig', () => {
  it('fills every default of the spec', () => {
    const config = loadConfig(base);
    expect(config).toMatchObject({
      openaiBaseUrl: 'https://api.openai.com/v1',
      port: 8000,
      host: '::',
      realtimeModel: 'gpt-realtime',
      realtimeVoice: 'verse',
      tokenTtlSeconds: 600,
      corsOrigins: ['https://www.espn.com'],
      allowMissingOrigin: false,
      rateLimitPerMinute: 10,
      rateLimitBurst: undefined,
      trustProxy: 0,
      redisUrl: undefined,
      openaiTimeoutMs: 10_000,
      openaiMaxRetries: 2,
      circuitBreakerThreshold: 5,
      circuitBreakerCooldownMs: 30_000,
      defaultMaxTokens: 4096,
      defaultSpeed: 1,
      maxInstructionsChars: 4000,
      healthCheckInterval: 30,
      metricsEnabled: true,
      logLevel: 'info',
      logFormat: 'json',
      tokenPoolSize: 0,
    });
    expect(config.allowedModels).toEqual([
      'gpt-realtime',
      'gpt-realtime-mini',
      'gpt-4o-realtime-preview-2024-12-17',
      'gpt-4o-mini-realtime-preview-2024-12-17',
    ]);
    expect(config.allowedVoices).toHaveLength(10);
    expect(config.defaultInstructions).toMatch(/Parker/);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.allowedOrigins)).toBe(true);
  });

  it('reads lists as a JSON array (the seed format) or as commas', () => {
    const json = loadConfig({ ...base, ALLOWED_ORIGINS: '["https://www.espn.com","chrome-extension://abc123"]' });
    expect(json.allowedOrigins).toEqual(['https://www.espn.com', 'chrome-extension://abc123']);
    const commas = loadConfig({ ...base, ALLOWED_ORIGINS: ' https://www.espn.com , chrome-extension://abc123 ,' });
    expect(commas.allowedOrigins).toEqual(['https://www.espn.com', 'chrome-extension://abc123']);
    expect(parseList('a,,b')).toEqual(['a', 'b']);
    expect(parseList('[1]')).toEqual({ error: 'must be a JSON array of strings' });
  });

  it('keeps CORS_ORIGINS apart when given', () => {
    const config = loadConfig({ ...base, CORS_ORIGINS: 'http://localhost:5173' });
    expect(config.corsOrigins).toEqual(['http://localhost:5173']);
    expect(config.allowedOrigins).toEqual(['https://www.espn.com']);
  });

  it('names every bad variable in one message and prints no value', () => {
    const message = problemsOf({
      ALLOWED_ORIGINS: '["https://www.espn.com"',
      TOKEN_TTL_SECONDS: '9000',
      PORT: 'eighty',
      ALLOW_MISSING_ORIGIN: 'maybe',
      OPENAI_BASE_URL: 'ftp://sk-leaky-value@example.com',
      DEFAULT_SPEED: '3',
    });
    for (const name of ['OPENAI_API_KEY', 'ALLOWED_ORIGINS', 'TOKEN_TTL_SECONDS', 'PORT', 'ALLOW_MISSING_ORIGIN', 'OPENAI_BASE_URL', 'DEFAULT_SPEED']) {
      expect(message).toContain(name);
    }
    expect(message).toContain('not valid JSON');
    expect(message).not.toContain('sk-leaky-value');
    expect(message).not.toContain('9000');
    expect(message.split('\n')).toHaveLength(1);
  });

  it('never echoes the API key, even when it is the bad value', () => {
    const message = problemsOf({ ...base, OPENAI_API_KEY: 'sk-has space-secret' });
    expect(message).toContain('OPENAI_API_KEY');
    expect(message).not.toContain('sk-has');
  });

  it.each([
    ['https://www.espn.com/', 'trailing slash'],
    ['https://www.espn.com/path', 'path'],
    ['https://*.espn.com', 'wildcard'],
    ['*', 'wildcard'],
    ['www.espn.com', 'no scheme'],
  ])('refuses %s as an origin (%s)', (origin) => {
    expect(problemsOf({ ...base, ALLOWED_ORIGINS: origin })).toContain('ALLOWED_ORIGINS');
  });

  it('requires the default model and voice to be allowed, and TTL within 10..7200', () => {
    expect(problemsOf({ ...base, ALLOWED_MODELS: 'gpt-realtime-mini' })).toContain('REALTIME_MODEL');
    expect(problemsOf({ ...base, REALTIME_VOICE: 'nobody' })).toContain('REALTIME_VOICE');
    expect(problemsOf({ ...base, TOKEN_TTL_SECONDS: '9' })).toContain('TOKEN_TTL_SECONDS');
    expect(loadConfig({ ...base, TOKEN_TTL_SECONDS: '7200' }).tokenTtlSeconds).toBe(7200);
  });

  it('quotes a bad origin (public, and the quickest fix) but never the key, even pasted as an origin', () => {
    const origin = problemsOf({ ...base, ALLOWED_ORIGINS: 'https://www.espn.com/' });
    expect(origin).toContain('ALLOWED_ORIGINS "https://www.espn.com/" is not a bare origin');
    expect(origin).not.toContain(base.OPENAI_API_KEY);
    const pasted = problemsOf({ ...base, ALLOWED_ORIGINS: `https://www.espn.com,${base.OPENAI_API_KEY}` });
    expect(pasted).toContain('ALLOWED_ORIGINS');
    expect(pasted).not.toContain(base.OPENAI_API_KEY);
    expect(pasted).not.toContain('config-test-secret');
    const oddKey = 'Abc123NotKeyShapedButSecret';
    const oddPasted = problemsOf({ ...base, OPENAI_API_KEY: oddKey, CORS_ORIGINS: oddKey });
    expect(oddPasted).toContain('CORS_ORIGINS');
    expect(oddPasted).not.toContain(oddKey);
  });

  it('reads 0 as off for every mint limit, as MINTS_PER_CLIENT_PER_DAY=0 has always meant', () => {
    const off = loadConfig({ ...base, GLOBAL_MINTS_PER_MINUTE: '0', GLOBAL_MINTS_PER_DAY: '0', MINTS_PER_CLIENT_PER_DAY: '0' });
    expect(off).toMatchObject({ globalMintsPerMinute: undefined, globalMintsPerDay: undefined, mintsPerClientPerDay: 0 });
    expect(loadConfig({ ...base, GLOBAL_MINTS_PER_MINUTE: '5', GLOBAL_MINTS_PER_DAY: '1000' })).toMatchObject({ globalMintsPerMinute: 5, globalMintsPerDay: 1000 });
    expect(problemsOf({ ...base, GLOBAL_MINTS_PER_DAY: '-1' })).toContain('GLOBAL_MINTS_PER_DAY must be a whole number from 0 to');
  });

  it('requires ALLOWED_ORIGINS', () => {
    expect(problemsOf({ OPENAI_API_KEY: 'sk-x' })).toContain('ALLOWED_ORIGINS is required');
  });
});

describe('.env.example', () => {
  const text = readFileSync(new URL('../.env.example', import.meta.url), 'utf8');
  const entries = text
    .split('\n')
    .filter((line) => /^[A-Z][A-Z0-9_]*=/.test(line))
    .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)] as const);

  it('names every variable the service reads, each once, with a comment above it', () => {
    const names = entries.map(([name]) => name);
    expect(new Set(names).size).toBe(names.length);
    expect(names.sort()).toEqual([...ENV_VARIABLES].sort());
    const lines = text.split('\n');
    for (const [name] of entries) {
      const at = lines.findIndex((line) => line.startsWith(`${name}=`));
      expect(lines[at - 1], `comment above ${name}`).toMatch(/^#/);
    }
  });

  it('is a valid configuration as it stands', () => {
    const config = loadConfig(Object.fromEntries(entries));
    expect(config.allowedOrigins).toContain('https://www.espn.com');
    expect(config.tokenPoolSize).toBe(0);
  });
});

describe('docs/settings.md', () => {
  it('names every setting the service reads, in a table row of its own', () => {
    const page = readFileSync(new URL('../docs/settings.md', import.meta.url), 'utf8');
    for (const name of ENV_VARIABLES) expect(page, name).toMatch(new RegExp(`^\\| \`${name}\` \\|`, 'm'));
  });
});
