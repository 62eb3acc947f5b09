import type { Config } from './config.js';

/** Where /metrics is served and how it is guarded. */
export function metricsExposure(config: Config): 'off' | 'public' | 'token' | 'own_port' | 'own_port_token' {
  if (!config.metricsEnabled) return 'off';
  if (config.metricsPort !== undefined) return config.metricsToken ? 'own_port_token' : 'own_port';
  return config.metricsToken ? 'token' : 'public';
}

/**
 * What is on, as the fields of one info line at boot: an operator reads the deploy's log once and
 * knows the auth mode, where the counters live, every limit, the pool, the origins and the operator
 * surfaces. Never a secret: only whether one is set.
 */
export function bootSummary(config: Config): Record<string, unknown> {
  return {
    auth: config.authJwksUrl ? 'jwks' : config.authJwtSecret ? 'hs256' : 'off',
    ...(config.authIssuer ? { auth_issuer: config.authIssuer } : {}),
    ...(config.authAudience.length > 0 ? { auth_audiences: config.authAudience.length } : {}),
    store: config.redisClusterNodes ? 'redis_cluster' : config.redisUrl ? 'redis' : 'memory',
    ...(config.redisClusterNodes ? { redis_cluster_seeds: config.redisClusterNodes.nodes.length } : {}),
    quotas: {
      per_minute: config.rateLimitPerMinute,
      burst_per_second: config.rateLimitBurst ?? null,
      per_client_per_day: config.mintsPerClientPerDay === 0 ? null : config.mintsPerClientPerDay,
    },
    budgets: { global_per_minute: config.globalMintsPerMinute ?? null, global_per_day: config.globalMintsPerDay ?? null },
    spend_caps_usd: { per_client_per_day: config.spendPerClientPerDayUsd ?? null, global_per_day: config.globalSpendPerDayUsd ?? null },
    ...(config.spendPerClientPerDayUsd !== undefined || config.globalSpendPerDayUsd !== undefined
      ? { secret_spend_estimate_usd: config.secretSpendEstimateUsd }
      : {}),
    pool: config.tokenPoolSize > 0 ? { size: config.tokenPoolSize, mode: config.tokenPoolMode } : 'off',
    calls: { max_seconds: config.maxCallSeconds, per_client: config.maxConcurrentCallsPerClient },
    origins: config.allowedOrigins.length,
    cors_origins: config.corsOrigins.length,
    allow_missing_origin: config.allowMissingOrigin,
    trust_proxy: config.trustProxy,
    metrics: metricsExposure(config),
    admin: config.adminToken ? 'on' : 'off',
    models: config.allowedModels.length,
  };
}

/** Settings that are valid but leave something open: one warning line each at boot. */
export function bootWarnings(config: Config): string[] {
  const warnings: string[] = [];
  if (config.globalMintsPerDay === undefined) {
    warnings.push('no GLOBAL_MINTS_PER_DAY: nothing bounds how many client secrets the whole service mints in a day');
  }
  if (metricsExposure(config) === 'public') {
    warnings.push(
      '/metrics is public on PORT with no token: set METRICS_TOKEN (a bearer) or METRICS_PORT (a private port), or METRICS_ENABLED=false',
    );
  }
  return warnings;
}
