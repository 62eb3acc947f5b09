import { z } from 'zod';

export const DEFAULT_MODELS = [
  'gpt-realtime',
  'gpt-realtime-mini',
  'gpt-4o-realtime-preview-2024-12-17',
  'gpt-4o-mini-realtime-preview-2024-12-17',
] as const;

export const DEFAULT_VOICES = [
  'verse',
  'cedar',
  'marin',
  'alloy',
  'ash',
  'ballad',
  'coral',
  'echo',
  'sage',
  'shimmer',
] as const;

export const DEFAULT_PERSONA =
  'You are Parker, an enthusiastic sports commentator who watches the game alongside the user. ' +
  'Speak in short, lively, spoken-style sentences, react to what the user says about the game, ' +
  'and keep the energy of a live broadcast without inventing scores or facts you were not given.';

// scheme://host[:port], nothing after it: what a browser puts in the Origin header.
const BARE_ORIGIN = /^[a-z][a-z0-9+.-]*:\/\/(\[[0-9a-f:.]+\]|[a-z0-9._~%-]+)(:\d{1,5})?$/;

const TRUE_WORDS = new Set(['true', '1', 'yes', 'on']);
const FALSE_WORDS = new Set(['false', '0', 'no', 'off']);

function booleanVar(fallback: boolean) {
  return z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') return fallback;
      const word = raw.trim().toLowerCase();
      if (TRUE_WORDS.has(word)) return true;
      if (FALSE_WORDS.has(word)) return false;
      ctx.addIssue({ code: 'custom', message: 'must be true or false' });
      return z.NEVER;
    });
}

function intVar<F extends number | undefined>(fallback: F, min: number, max: number) {
  return z
    .string()
    .optional()
    .transform((raw, ctx): number | F => {
      if (raw === undefined || raw.trim() === '') return fallback;
      const value = Number(raw.trim());
      if (!Number.isInteger(value) || value < min || value > max) {
        ctx.addIssue({ code: 'custom', message: `must be a whole number from ${min} to ${max}` });
        return z.NEVER;
      }
      return value;
    });
}

function numberVar(fallback: number, min: number, max: number) {
  return z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') return fallback;
      const value = Number(raw.trim());
      if (!Number.isFinite(value) || value < min || value > max) {
        ctx.addIssue({ code: 'custom', message: `must be a number from ${min} to ${max}` });
        return z.NEVER;
      }
      return value;
    });
}

/** Parses a list given as a JSON array of strings or as comma-separated words. */
export function parseList(raw: string): string[] | { error: string } {
  const text = raw.trim();
  if (text.startsWith('[')) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      return { error: 'starts with [ but is not valid JSON' };
    }
    if (!Array.isArray(parsed) || !parsed.every((item) => typeof item === 'string')) {
      return { error: 'must be a JSON array of strings' };
    }
    return parsed.map((item) => item.trim()).filter((item) => item !== '');
  }
  return text
    .split(',')
    .map((item) => item.trim())
    .filter((item) => item !== '');
}

function listVar(fallback: readonly string[] | undefined, check?: (item: string) => string | undefined) {
  return z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') {
        if (fallback === undefined) {
          ctx.addIssue({ code: 'custom', message: 'is required (a JSON array or comma-separated list)' });
          return z.NEVER;
        }
        return [...fallback];
      }
      const items = parseList(raw);
      if (!Array.isArray(items)) {
        ctx.addIssue({ code: 'custom', message: items.error });
        return z.NEVER;
      }
      if (items.length === 0) {
        ctx.addIssue({ code: 'custom', message: 'must name at least one entry' });
        return z.NEVER;
      }
      const problems = check ? items.map(check).filter((p): p is string => p !== undefined) : [];
      if (problems.length > 0) {
        ctx.addIssue({ code: 'custom', message: problems.join('; ') });
        return z.NEVER;
      }
      return [...new Set(items)];
    });
}

function checkOrigin(item: string): string | undefined {
  if (item.includes('*')) return `"${item}" has a wildcard; list exact origins`;
  if (!BARE_ORIGIN.test(item.toLowerCase())) {
    return `"${item}" is not a bare origin (scheme://host[:port], no path, no trailing slash)`;
  }
  return undefined;
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

const envSchema = z
  .object({
    OPENAI_API_KEY: z
      .string({ error: 'is required' })
      .trim()
      .min(1, { error: 'is required' })
      .refine((key) => !/\s/.test(key), { error: 'must not contain whitespace' }),
    OPENAI_BASE_URL: z
      .string()
      .optional()
      .transform((raw, ctx) => {
        const value = raw?.trim() || 'https://api.openai.com/v1';
        let url: URL;
        try {
          url = new URL(value);
        } catch {
          ctx.addIssue({ code: 'custom', message: 'must be an http(s) URL' });
          return z.NEVER;
        }
        if (url.protocol !== 'https:' && url.protocol !== 'http:') {
          ctx.addIssue({ code: 'custom', message: 'must be an http(s) URL' });
          return z.NEVER;
        }
        return value.replace(/\/+$/, '');
      }),
    PORT: intVar(8000, 0, 65535),
    HOST: z
      .string()
      .optional()
      .transform((raw) => raw?.trim() || '0.0.0.0'),
    REALTIME_MODEL: z
      .string()
      .optional()
      .transform((raw) => raw?.trim() || 'gpt-realtime'),
    REALTIME_VOICE: z
      .string()
      .optional()
      .transform((raw) => raw?.trim() || 'verse'),
    ALLOWED_MODELS: listVar(DEFAULT_MODELS),
    ALLOWED_VOICES: listVar(DEFAULT_VOICES),
    TOKEN_TTL_SECONDS: intVar(600, 10, 7200),
    ALLOWED_ORIGINS: listVar(undefined, checkOrigin),
    CORS_ORIGINS: listVar([], checkOrigin),
    ALLOW_MISSING_ORIGIN: booleanVar(false),
    RATE_LIMIT_PER_MINUTE: intVar(10, 1, 1_000_000),
    RATE_LIMIT_BURST: intVar(undefined, 1, 1_000_000),
    TRUST_PROXY: intVar(0, 0, 10),
    REDIS_URL: z
      .string()
      .optional()
      .transform((raw, ctx) => {
        const value = raw?.trim();
        if (!value) return undefined;
        if (!/^rediss?:\/\//.test(value)) {
          ctx.addIssue({ code: 'custom', message: 'must be a redis:// or rediss:// URL' });
          return z.NEVER;
        }
        return value;
      }),
    OPENAI_TIMEOUT_MS: intVar(10_000, 100, 120_000),
    OPENAI_MAX_RETRIES: intVar(2, 0, 5),
    CIRCUIT_BREAKER_THRESHOLD: intVar(5, 1, 1000),
    CIRCUIT_BREAKER_COOLDOWN_MS: intVar(30_000, 100, 3_600_000),
    DEFAULT_INSTRUCTIONS: z
      .string()
      .optional()
      .transform((raw) => raw?.trim() || DEFAULT_PERSONA),
    DEFAULT_MAX_TOKENS: intVar(4096, 1, 4096),
    DEFAULT_SPEED: numberVar(1.0, 0.25, 1.5),
    MAX_INSTRUCTIONS_CHARS: intVar(4000, 1, 12_000),
    HEALTH_CHECK_INTERVAL: intVar(30, 1, 3600),
    METRICS_ENABLED: booleanVar(true),
    LOG_LEVEL: z
      .string()
      .optional()
      .transform((raw, ctx) => {
        const value = raw?.trim().toLowerCase() || 'info';
        if (!(LOG_LEVELS as readonly string[]).includes(value)) {
          ctx.addIssue({ code: 'custom', message: `must be one of ${LOG_LEVELS.join(', ')}` });
          return z.NEVER;
        }
        return value as (typeof LOG_LEVELS)[number];
      }),
    LOG_FORMAT: z
      .string()
      .optional()
      .transform((raw, ctx) => {
        const value = raw?.trim().toLowerCase() || 'json';
        if (value !== 'json' && value !== 'pretty') {
          ctx.addIssue({ code: 'custom', message: 'must be json or pretty' });
          return z.NEVER;
        }
        return value;
      }),
    TOKEN_POOL_SIZE: intVar(0, 0, 100),
    TOKEN_POOL_MIN_REMAINING_SECONDS: intVar(120, 5, 7000),
    TOKEN_POOL_REFILL_PER_SECOND: numberVar(2, 0.01, 100),
    SHUTDOWN_TIMEOUT_MS: intVar(10_000, 100, 120_000),
    // Relayed calls (POST /v1/realtime/calls): OpenAI's own limit is 60 minutes a session.
    MAX_CALL_SECONDS: intVar(1800, 10, 3600),
    MAX_CONCURRENT_CALLS_PER_CLIENT: intVar(2, 1, 1000),
  })
  .superRefine((env, ctx) => {
    if (Array.isArray(env.ALLOWED_MODELS) && !env.ALLOWED_MODELS.includes(env.REALTIME_MODEL)) {
      ctx.addIssue({ code: 'custom', path: ['REALTIME_MODEL'], message: 'must be one of ALLOWED_MODELS' });
    }
    if (Array.isArray(env.ALLOWED_VOICES) && !env.ALLOWED_VOICES.includes(env.REALTIME_VOICE)) {
      ctx.addIssue({ code: 'custom', path: ['REALTIME_VOICE'], message: 'must be one of ALLOWED_VOICES' });
    }
    if (
      env.TOKEN_POOL_SIZE !== undefined &&
      env.TOKEN_POOL_SIZE > 0 &&
      env.TOKEN_POOL_MIN_REMAINING_SECONDS !== undefined &&
      env.TOKEN_TTL_SECONDS !== undefined &&
      env.TOKEN_POOL_MIN_REMAINING_SECONDS >= env.TOKEN_TTL_SECONDS
    ) {
      ctx.addIssue({
        code: 'custom',
        path: ['TOKEN_POOL_MIN_REMAINING_SECONDS'],
        message: 'must be below TOKEN_TTL_SECONDS, or every pooled secret is stale at birth',
      });
    }
  });

/** Every environment variable the service reads. */
export const ENV_VARIABLES: readonly string[] = Object.keys(envSchema.shape);

export interface Config {
  readonly openaiApiKey: string;
  readonly openaiBaseUrl: string;
  readonly port: number;
  readonly host: string;
  readonly realtimeModel: string;
  readonly realtimeVoice: string;
  readonly allowedModels: readonly string[];
  readonly allowedVoices: readonly string[];
  readonly tokenTtlSeconds: number;
  readonly allowedOrigins: readonly string[];
  readonly corsOrigins: readonly string[];
  readonly allowMissingOrigin: boolean;
  readonly rateLimitPerMinute: number;
  readonly rateLimitBurst: number | undefined;
  readonly trustProxy: number;
  readonly redisUrl: string | undefined;
  readonly openaiTimeoutMs: number;
  readonly openaiMaxRetries: number;
  readonly circuitBreakerThreshold: number;
  readonly circuitBreakerCooldownMs: number;
  readonly defaultInstructions: string;
  readonly defaultMaxTokens: number;
  readonly defaultSpeed: number;
  readonly maxInstructionsChars: number;
  readonly healthCheckIntervalSeconds: number;
  readonly metricsEnabled: boolean;
  readonly logLevel: string;
  readonly logFormat: 'json' | 'pretty';
  readonly tokenPoolSize: number;
  readonly tokenPoolMinRemainingSeconds: number;
  readonly tokenPoolRefillPerSecond: number;
  readonly shutdownTimeoutMs: number;
  readonly maxCallSeconds: number;
  readonly maxConcurrentCallsPerClient: number;
}

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`Invalid configuration: ${problems.join('; ')}`);
    this.name = 'ConfigError';
  }
}

/** Reads the environment once; throws a ConfigError naming every bad variable (never its value). */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const result = envSchema.safeParse(env);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `${issue.path.join('.')} ${issue.message}`);
    throw new ConfigError([...new Set(problems)]);
  }
  const e = result.data;
  // Origins are compared exactly; browsers serialize scheme and host in lower case.
  const allowedOrigins = e.ALLOWED_ORIGINS.map((o) => o.toLowerCase());
  const corsOrigins = e.CORS_ORIGINS.length > 0 ? e.CORS_ORIGINS.map((o) => o.toLowerCase()) : allowedOrigins;
  return Object.freeze({
    openaiApiKey: e.OPENAI_API_KEY,
    openaiBaseUrl: e.OPENAI_BASE_URL,
    port: e.PORT,
    host: e.HOST,
    realtimeModel: e.REALTIME_MODEL,
    realtimeVoice: e.REALTIME_VOICE,
    allowedModels: Object.freeze(e.ALLOWED_MODELS),
    allowedVoices: Object.freeze(e.ALLOWED_VOICES),
    tokenTtlSeconds: e.TOKEN_TTL_SECONDS,
    allowedOrigins: Object.freeze(allowedOrigins),
    corsOrigins: Object.freeze(corsOrigins),
    allowMissingOrigin: e.ALLOW_MISSING_ORIGIN,
    rateLimitPerMinute: e.RATE_LIMIT_PER_MINUTE,
    rateLimitBurst: e.RATE_LIMIT_BURST,
    trustProxy: e.TRUST_PROXY,
    redisUrl: e.REDIS_URL,
    openaiTimeoutMs: e.OPENAI_TIMEOUT_MS,
    openaiMaxRetries: e.OPENAI_MAX_RETRIES,
    circuitBreakerThreshold: e.CIRCUIT_BREAKER_THRESHOLD,
    circuitBreakerCooldownMs: e.CIRCUIT_BREAKER_COOLDOWN_MS,
    defaultInstructions: e.DEFAULT_INSTRUCTIONS,
    defaultMaxTokens: e.DEFAULT_MAX_TOKENS,
    defaultSpeed: e.DEFAULT_SPEED,
    maxInstructionsChars: e.MAX_INSTRUCTIONS_CHARS,
    healthCheckIntervalSeconds: e.HEALTH_CHECK_INTERVAL,
    metricsEnabled: e.METRICS_ENABLED,
    logLevel: e.LOG_LEVEL,
    logFormat: e.LOG_FORMAT,
    tokenPoolSize: e.TOKEN_POOL_SIZE,
    tokenPoolMinRemainingSeconds: e.TOKEN_POOL_MIN_REMAINING_SECONDS,
    tokenPoolRefillPerSecond: e.TOKEN_POOL_REFILL_PER_SECOND,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT_MS,
    maxCallSeconds: e.MAX_CALL_SECONDS,
    maxConcurrentCallsPerClient: e.MAX_CONCURRENT_CALLS_PER_CLIENT,
  });
}
