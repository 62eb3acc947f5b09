import { z } from 'zod';
import { scrubSecrets, secretScrubber } from './redact.js';
import { priceOverridesSchema, Pricing, type TokenPrices } from './usage/pricing.js';

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

function numberVar<F extends number | undefined>(fallback: F, min: number, max: number) {
  return z
    .string()
    .optional()
    .transform((raw, ctx): number | F => {
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

function listVar(fallback: readonly string[] | undefined, check?: (item: string) => string | undefined, normalize = (item: string) => item) {
  return z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw.trim() === '') {
        if (fallback === undefined) {
          ctx.addIssue({ code: 'custom', message: 'is required (a JSON array or comma-separated list)' });
          return z.NEVER;
        }
        return Object.freeze<readonly string[]>([...fallback]);
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
      return Object.freeze<readonly string[]>([...new Set(items.map(normalize))]);
    });
}

// An origin is public, so a bad one is quoted to help fix it; anything key-shaped in it is not.
function checkOrigin(item: string): string | undefined {
  const shown = scrubSecrets(item, 100);
  if (item.includes('*')) return `"${shown}" has a wildcard; list exact origins`;
  if (!BARE_ORIGIN.test(item.toLowerCase())) {
    return `"${shown}" is not a bare origin (scheme://host[:port], no path, no trailing slash)`;
  }
  return undefined;
}

const lowerCase = (item: string) => item.toLowerCase();

/** An operator's token (ADMIN_TOKEN, METRICS_TOKEN): long enough that guessing it is hopeless. */
function operatorTokenVar() {
  return z
    .string()
    .optional()
    .transform((raw, ctx) => {
      if (raw === undefined || raw === '') return undefined;
      if (/\s/.test(raw)) {
        ctx.addIssue({ code: 'custom', message: 'must not contain whitespace' });
        return z.NEVER;
      }
      if (raw.length < 32) {
        ctx.addIssue({ code: 'custom', message: 'must be at least 32 characters (e.g. openssl rand -hex 32)' });
        return z.NEVER;
      }
      return raw;
    });
}

/** Where a Redis Cluster is: its seed nodes, and the credentials and TLS every node shares. */
export interface RedisClusterSeeds {
  nodes: { host: string; port: number }[];
  tls: boolean;
  username: string | undefined;
  /** Never logged or printed. */
  password: string | undefined;
}

const HOST_PORT = /^(?:\[([0-9a-f:.]+)\]|([a-z0-9._-]+)):(\d{1,5})$/i;

/**
 * Seeds as `host:port` or `redis[s]://[user:password@]host:port`. Problems name an entry by its
 * position and never quote it (a URL may carry a password).
 */
function parseClusterSeeds(raw: string): RedisClusterSeeds | string {
  const entries = parseList(raw);
  if (!Array.isArray(entries)) return entries.error;
  if (entries.length === 0) return 'must name at least one node (host:port)';
  const seeds: (Omit<RedisClusterSeeds, 'nodes'> & { host: string; port: number })[] = [];
  for (const [index, entry] of entries.entries()) {
    const seed = parseClusterSeed(entry);
    if (typeof seed === 'string') return `entry ${index + 1} ${seed}`;
    seeds.push(seed);
  }
  const [first] = seeds as [(typeof seeds)[number]];
  if (seeds.some((s) => s.tls !== first.tls || s.username !== first.username || s.password !== first.password)) {
    return 'entries disagree on scheme or credentials (a cluster has one of each)';
  }
  return { nodes: seeds.map(({ host, port }) => ({ host, port })), tls: first.tls, username: first.username, password: first.password };
}

function parseClusterSeed(entry: string): (Omit<RedisClusterSeeds, 'nodes'> & { host: string; port: number }) | string {
  const validPort = (port: number) => Number.isInteger(port) && port >= 1 && port <= 65535;
  if (!/^rediss?:\/\//i.test(entry)) {
    const match = HOST_PORT.exec(entry);
    if (!match) return 'is not host:port (IPv6 as [address]:port) or a redis:// or rediss:// URL';
    const port = Number(match[3]);
    if (!validPort(port)) return 'has a port outside 1..65535';
    return { host: (match[1] ?? match[2]) as string, port, tls: false, username: undefined, password: undefined };
  }
  let url: URL;
  try {
    url = new URL(entry);
  } catch {
    return 'is not a valid redis:// or rediss:// URL';
  }
  if ((url.pathname !== '' && url.pathname !== '/') || url.search !== '' || url.hash !== '') {
    return 'has a path or query: a cluster has one database, so give only the host, the port and any credentials';
  }
  const port = url.port === '' ? 6379 : Number(url.port);
  if (!validPort(port) || url.hostname === '') return 'needs a host and a port from 1 to 65535';
  return {
    host: url.hostname.replace(/^\[(.*)\]$/, '$1'),
    port,
    tls: url.protocol.toLowerCase() === 'rediss:',
    username: url.username === '' ? undefined : decodeURIComponent(url.username),
    password: url.password === '' ? undefined : decodeURIComponent(url.password),
  };
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

/** The environment, one key per variable: the Config type and its fields are derived from it. */
const envShape = {
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
    // "::" takes IPv6 and (dual-stack, Linux's default) IPv4: Railway's private network is IPv6-only.
    HOST: z
      .string()
      .optional()
      .transform((raw) => raw?.trim() || '::'),
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
    // Origins are compared exactly; browsers serialize scheme and host in lower case.
    ALLOWED_ORIGINS: listVar(undefined, checkOrigin, lowerCase),
    // Empty: the same as ALLOWED_ORIGINS (filled in below).
    CORS_ORIGINS: listVar([], checkOrigin, lowerCase),
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
    // A Redis (or Valkey) Cluster instead of one server: the seeds; the client learns the rest.
    REDIS_CLUSTER_NODES: z
      .string()
      .optional()
      .transform((raw, ctx) => {
        if (raw === undefined || raw.trim() === '') return undefined;
        const seeds = parseClusterSeeds(raw);
        if (typeof seeds === 'string') {
          ctx.addIssue({ code: 'custom', message: seeds });
          return z.NEVER;
        }
        return seeds;
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
    // --- operators ---
    METRICS_TOKEN: operatorTokenVar(),
    METRICS_PORT: intVar(undefined, 1, 65535),
    ADMIN_TOKEN: operatorTokenVar(),
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
    TOKEN_POOL_MODE: z
      .string()
      .optional()
      .transform((raw, ctx) => {
        const value = raw?.trim().toLowerCase() || 'demand';
        if (value !== 'demand' && value !== 'default') {
          ctx.addIssue({ code: 'custom', message: 'must be demand or default' });
          return z.NEVER;
        }
        return value;
      }),
    SHUTDOWN_TIMEOUT_MS: intVar(10_000, 100, 120_000),
    // --- who may ask, and how much ---
    RATE_LIMIT_IPV6_PREFIX: intVar(56, 32, 128),
    MINTS_PER_CLIENT_PER_DAY: intVar(100, 0, 1_000_000),
    // 0 = off, as MINTS_PER_CLIENT_PER_DAY=0 is: the same as unset.
    GLOBAL_MINTS_PER_MINUTE: intVar(undefined, 0, 10_000_000).transform((value) => value || undefined),
    GLOBAL_MINTS_PER_DAY: intVar(undefined, 0, 1_000_000_000).transform((value) => value || undefined),
    AUTH_JWKS_URL: z
      .string()
      .optional()
      .transform((raw, ctx) => {
        const value = raw?.trim();
        if (!value) return undefined;
        let url: URL | undefined;
        try {
          url = new URL(value);
        } catch {
          url = undefined;
        }
        if (!url || (url.protocol !== 'https:' && url.protocol !== 'http:')) {
          ctx.addIssue({ code: 'custom', message: 'must be an http(s) URL of a JWKS document' });
          return z.NEVER;
        }
        return value;
      }),
    AUTH_JWT_SECRET: z
      .string()
      .optional()
      .transform((raw, ctx) => {
        if (raw === undefined || raw === '') return undefined;
        if (Buffer.byteLength(raw, 'utf8') < 32) {
          ctx.addIssue({ code: 'custom', message: 'must be at least 32 bytes (HS256)' });
          return z.NEVER;
        }
        return raw;
      }),
    AUTH_ISSUER: z
      .string()
      .optional()
      .transform((raw) => raw?.trim() || undefined),
    AUTH_AUDIENCE: listVar([]),
    // Relayed calls (POST /v1/realtime/calls): OpenAI's own limit is 60 minutes a session.
    MAX_CALL_SECONDS: intVar(1800, 10, 3600),
    MAX_CONCURRENT_CALLS_PER_CLIENT: intVar(2, 1, 1000),
    // The sideband of each relayed call puts back instructions and max_output_tokens the page changed.
    LOCK_SESSION: booleanVar(true),
    // --- spend: dollars, not counts (unset caps are off) ---
    SPEND_PER_CLIENT_PER_DAY_USD: numberVar(undefined, 0.01, 1_000_000),
    GLOBAL_SPEND_PER_DAY_USD: numberVar(undefined, 0.01, 1_000_000_000),
    SECRET_SPEND_ESTIMATE_USD: numberVar(0.5, 0, 1_000),
    REALTIME_PRICES: z
      .string()
      .optional()
      .transform((raw, ctx): Readonly<Record<string, TokenPrices>> => {
        if (raw === undefined || raw.trim() === '') return Object.freeze({});
        let parsed: unknown;
        try {
          parsed = JSON.parse(raw);
        } catch {
          ctx.addIssue({ code: 'custom', message: 'must be JSON: {"<model>": {"text_input": 4, "text_cached_input": 0.4, ...}} (USD per 1M tokens)' });
          return z.NEVER;
        }
        const prices = priceOverridesSchema.safeParse(parsed);
        if (!prices.success) {
          ctx.addIssue({ code: 'custom', message: prices.error.issues.map((issue) => `${issue.path.join('.')} ${issue.message}`.trim()).join('; ') });
          return z.NEVER;
        }
        return Object.freeze(prices.data);
      }),
};

const envSchema = z
  .object(envShape)
  .superRefine((env, ctx) => {
    if (env.AUTH_JWKS_URL && env.AUTH_JWT_SECRET) {
      ctx.addIssue({ code: 'custom', path: ['AUTH_JWT_SECRET'], message: 'set AUTH_JWKS_URL or AUTH_JWT_SECRET, not both' });
    }
    // Half-set settings would pass silently and check nothing: refuse them by name.
    const authOff = !env.AUTH_JWKS_URL && !env.AUTH_JWT_SECRET;
    const authOnly = 'checks nothing while caller authentication is off: set AUTH_JWKS_URL or AUTH_JWT_SECRET too, or unset it';
    if (authOff && env.AUTH_ISSUER) ctx.addIssue({ code: 'custom', path: ['AUTH_ISSUER'], message: authOnly });
    if (authOff && env.AUTH_AUDIENCE.length > 0) ctx.addIssue({ code: 'custom', path: ['AUTH_AUDIENCE'], message: authOnly });
    if (env.METRICS_PORT !== undefined && env.METRICS_PORT === env.PORT) {
      ctx.addIssue({ code: 'custom', path: ['METRICS_PORT'], message: 'must differ from PORT (it is the private port that serves /metrics alone)' });
    }
    if (!env.METRICS_ENABLED) {
      for (const name of ['METRICS_PORT', 'METRICS_TOKEN'] as const) {
        if (env[name] !== undefined) ctx.addIssue({ code: 'custom', path: [name], message: 'is set but METRICS_ENABLED=false turns /metrics off' });
      }
    }
    if (env.REDIS_URL && env.REDIS_CLUSTER_NODES) {
      ctx.addIssue({
        code: 'custom',
        path: ['REDIS_CLUSTER_NODES'],
        message: 'set REDIS_URL (one server) or REDIS_CLUSTER_NODES (a cluster), not both',
      });
    }
    // A JWKS may sign for many tenants (Firebase's signs every project's tokens): without the
    // issuer, users of anyone's project would get in.
    if (env.AUTH_JWKS_URL && !env.AUTH_ISSUER) {
      ctx.addIssue({ code: 'custom', path: ['AUTH_ISSUER'], message: 'is required with AUTH_JWKS_URL (the iss your provider puts in its tokens)' });
    }
    if (Array.isArray(env.ALLOWED_MODELS) && !env.ALLOWED_MODELS.includes(env.REALTIME_MODEL)) {
      ctx.addIssue({ code: 'custom', path: ['REALTIME_MODEL'], message: 'must be one of ALLOWED_MODELS' });
    }
    const capOn = env.SPEND_PER_CLIENT_PER_DAY_USD !== undefined || env.GLOBAL_SPEND_PER_DAY_USD !== undefined;
    if (capOn && Array.isArray(env.ALLOWED_MODELS) && typeof env.REALTIME_PRICES === 'object') {
      // A call of a model without a price could never be charged: its cap would silently not hold.
      const pricing = new Pricing(env.REALTIME_PRICES);
      const unpriced = env.ALLOWED_MODELS.filter((model: string) => !pricing.has(model));
      if (unpriced.length > 0) {
        ctx.addIssue({
          code: 'custom',
          path: ['REALTIME_PRICES'],
          message: `has no price for ${unpriced.join(', ')} (in ALLOWED_MODELS): with a spend cap on, every allowed model needs one`,
        });
      }
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
export const ENV_VARIABLES: readonly string[] = Object.keys(envShape);

type Env = z.output<typeof envSchema>;
/** OPENAI_API_KEY -> openaiApiKey. */
type CamelCase<S extends string> = S extends `${infer Head}_${infer Tail}` ? `${Lowercase<Head>}${Capitalize<CamelCase<Tail>>}` : Lowercase<S>;

/**
 * The validated environment, one camelCase field per variable (HEALTH_CHECK_INTERVAL ->
 * healthCheckInterval), plus what is derived from several. Frozen. Modules take the slice they read
 * (`Pick<Config, ...>`).
 */
export type Config = { readonly [K in keyof Env as CamelCase<K & string>]: Env[K] } & {
  /** Whether the /v1 routes require a bearer JWT (AUTH_JWKS_URL or AUTH_JWT_SECRET set). */
  readonly authEnabled: boolean;
};

const camelCase = (name: string) => name.toLowerCase().replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`Invalid configuration: ${problems.join('; ')}`);
    this.name = 'ConfigError';
  }
}

/**
 * Reads the environment once; throws a ConfigError naming every bad variable. Only a bad origin is
 * quoted (origins are public); no other value is, and the API key, JWT secret and operator tokens
 * never, wherever they were pasted.
 */
export function loadConfig(env: NodeJS.ProcessEnv = process.env): Config {
  const result = envSchema.safeParse(env);
  if (!result.success) {
    const scrub = secretScrubber(env.OPENAI_API_KEY?.trim(), env.AUTH_JWT_SECRET, env.ADMIN_TOKEN, env.METRICS_TOKEN);
    const problems = result.error.issues.map((issue) => scrub(`${issue.path.join('.')} ${issue.message}`));
    throw new ConfigError([...new Set(problems)]);
  }
  const valid = result.data;
  const fields: Record<string, unknown> = {};
  // Every variable, set or not (an unset optional one is an explicit undefined).
  for (const name of ENV_VARIABLES) fields[camelCase(name)] = valid[name as keyof typeof valid];
  if (valid.CORS_ORIGINS.length === 0) fields.corsOrigins = valid.ALLOWED_ORIGINS;
  fields.authEnabled = valid.AUTH_JWKS_URL !== undefined || valid.AUTH_JWT_SECRET !== undefined;
  return Object.freeze(fields) as Config;
}
