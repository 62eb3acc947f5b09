import type { FastifyBaseLogger } from 'fastify';
import type { Logger } from 'pino';
import { bootSummary, bootWarnings } from './boot-summary.js';
import type { Config } from './config.js';
import { boundedStdout, type BoundedDestination } from './log-destination.js';
import { createLogger } from './logger.js';
import { ServiceMetrics } from './metrics.js';
import { CircuitBreaker } from './openai/circuit-breaker.js';
import { OpenAIClient } from './openai/client.js';
import { UpstreamTransport } from './openai/transport.js';
import { UpstreamHealth } from './openai/upstream-health.js';
import type { JwtVerifierOptions } from './plugins/caller-auth.js';
import type { CallSpend } from './realtime/call-spend.js';
import { CallManager } from './realtime/calls.js';
import { MemoryCallStore } from './realtime/calls-store.js';
import { FailoverCallStore } from './realtime/failover-call-store.js';
import { SecretMinter, type PreparedSession } from './realtime/minter.js';
import { SecretPool } from './realtime/secret-pool.js';
import { SIDEBAND_OPEN_TIMEOUT_MS, Sidebands } from './realtime/sideband.js';
import { createRedis, SharedState, type RedisClient } from './redis.js';
import { MemoryLedger } from './usage/ledger.js';
import { MintBudget } from './usage/mint-budget.js';
import { Pricing } from './usage/pricing.js';
import { RedisLedger } from './usage/redis-ledger.js';
import { SpendControl } from './usage/spend.js';

/** How long the exit waits for stdout to take the last log lines. */
const LOG_FLUSH_AT_EXIT_MS = 1_000;

/** What a test (or the server) may swap: no module is monkey-patched. */
export interface AppDeps {
  logger?: Logger;
  /** Milliseconds since the epoch: breaker cooldowns, pool expiry, upstream health cache (upstream
   * deadlines use the monotonic clock). */
  now?: () => number;
  /** Backoff jitter. */
  random?: () => number;
  /** Caller authentication knobs (tests shorten the JWKS refetch cooldown). */
  jwt?: JwtVerifierOptions;
  /** What prices relayed calls' usage and enforces the spend caps (default: no caps). */
  spend?: CallSpend;
  /**
   * The event loop's mean delay over a second (ms) above which new work gets 503 (default 1000);
   * `Infinity` turns the check off. In-process tests share the loop with their runner, whose own
   * stalls (a busy CI machine) are not the server's overload.
   */
  maxEventLoopDelayMs?: number;
}

/** Everything the service is, apart from HTTP: built once per app, started and closed with it. */
export interface Services {
  logger: FastifyBaseLogger;
  /** Our own bounded stdout (undefined when the logger was injected or pretty-printed). */
  logDestination: BoundedDestination | undefined;
  metrics: ServiceMetrics;
  client: OpenAIClient;
  breaker: CircuitBreaker;
  budget: MintBudget;
  minter: SecretMinter;
  pool: SecretPool<PreparedSession> | undefined;
  upstreamHealth: UpstreamHealth;
  /** Set when REDIS_URL or REDIS_CLUSTER_NODES is: shared counters and call deadlines. */
  redis: RedisClient | undefined;
  sharedState: SharedState;
  calls: CallManager;
  /** The daily quota, the spend caps and the usage report (the usage ledger, in Redis when set). */
  spend: SpendControl;
  /** When the app is ready: connect, check, warm, watch. */
  start(): void;
  /** Shutdown has begun: calls to OpenAI in flight must end within `withinMs`. */
  drain(withinMs: number): void;
  close(): Promise<void>;
}

/** Builds the client, breaker, stores, pool, minter and call manager from the config: no HTTP. */
export async function createServices(config: Config, deps: AppDeps = {}): Promise<Services> {
  // Our own stdout is bounded (drops rather than exhausts memory); an injected logger is the caller's.
  const logDestination = deps.logger || config.logFormat !== 'json' ? undefined : boundedStdout();
  const logger: FastifyBaseLogger = deps.logger ?? createLogger(config, logDestination);
  const now = deps.now ?? Date.now;
  const metrics = new ServiceMetrics(config.metricsEnabled);
  const budget = new MintBudget(config);
  // One line saying what is on, then one per setting that leaves something open.
  logger.info(bootSummary(config), 'service configured');
  for (const warning of bootWarnings(config)) logger.warn(warning);

  const transport = new UpstreamTransport({
    baseUrl: config.openaiBaseUrl,
    apiKey: config.openaiApiKey,
    timeoutMs: config.openaiTimeoutMs,
    maxRetries: config.openaiMaxRetries,
    random: deps.random,
    onAttempt: (operation, outcome, seconds) => metrics.observeUpstream(operation, outcome, seconds),
  });
  const client = new OpenAIClient(transport);
  const breaker = new CircuitBreaker({
    threshold: config.circuitBreakerThreshold,
    cooldownMs: config.circuitBreakerCooldownMs,
    now,
    onTransition: (from, to, consecutiveFailures) => {
      logger[to === 'open' ? 'warn' : 'info'](
        { breaker_from: from, breaker_to: to, consecutive_failures: consecutiveFailures },
        `circuit breaker ${to}`,
      );
    },
  });
  const minter = new SecretMinter(config, client, breaker);
  const poolLog = logger.child({ component: 'token-pool' });
  const pool =
    config.tokenPoolSize > 0
      ? new SecretPool<PreparedSession>({
          size: config.tokenPoolSize,
          minRemainingSeconds: config.tokenPoolMinRemainingSeconds,
          ttlSeconds: config.tokenTtlSeconds,
          refillPerSecond: config.tokenPoolRefillPerSecond,
          mode: config.tokenPoolMode,
          seed: { key: minter.defaultSession.key, config: minter.defaultSession },
          mint: (session) => minter.mintPrepared(session, poolLog),
          // No refills while OpenAI is failing or the service's budget is spent.
          upstreamWaitMs: () => Math.max(breaker.retryAfterMs, budget.waitMs()),
          log: poolLog,
          now,
        })
      : undefined;
  if (pool) minter.usePool(pool);
  const upstreamHealth = new UpstreamHealth(
    () => client.checkHealth(Math.min(5_000, config.openaiTimeoutMs)),
    config.healthCheckInterval * 1000,
    now,
    (from, to) => {
      if (to === 'unauthorized') logger.error({ openai_status: to }, 'OpenAI refused the API key (401/403 on the readiness check, POST /realtime/client_secrets): /readyz answers 503');
      else logger[to === 'connected' ? 'info' : 'warn']({ openai_status_from: from, openai_status: to }, `OpenAI status ${to}`);
    },
  );
  const redis = await createRedis(config);
  // Watches the connection; puts back what this replica kept in-process whenever Redis returns.
  const sharedState = new SharedState(redis, logger.child({ component: 'redis' }));
  // One sideband per relayed call started here: usage, session lock, fail closed under a cap.
  const sidebands = new Sidebands({
    baseUrl: config.openaiBaseUrl,
    apiKey: config.openaiApiKey,
    lockSession: config.lockSession,
    openTimeoutMs: SIDEBAND_OPEN_TIMEOUT_MS,
    log: logger.child({ component: 'sideband' }),
    onEvent: (event) => metrics.sidebandEvents.inc({ event }),
    onCorrection: () => metrics.lockCorrections.inc(),
  });
  metrics.watchSidebands(() => sidebands.openCount);
  // Per mint with a daily quota: one Map lookup in memory, one EVALSHA in Redis (the limiter's own
  // day counter did as much). A spend cap adds the global window: a second EVALSHA, sent alongside.
  const usageLog = logger.child({ component: 'usage' });
  const ledger = redis ? new RedisLedger(redis, { log: usageLog, clock: now }) : new MemoryLedger({ log: usageLog, clock: now });
  const spend = new SpendControl(config, new Pricing(config.realtimePrices), ledger, {
    registry: metrics.registry,
    now,
    log: usageLog,
    // The report's active calls per client, from the call store (across replicas with Redis).
    activeCalls: (clientKeys): Promise<ReadonlyMap<string, number>> => calls.activeCallsOf(clientKeys),
  });
  // Relayed calls: deadlines shared in Redis when there is one (any replica hangs up what is due).
  const calls: CallManager = new CallManager({
    config,
    client,
    sessions: minter,
    breaker,
    store: redis ? new FailoverCallStore(redis, sharedState, now) : new MemoryCallStore(),
    log: logger.child({ component: 'calls' }),
    now,
    random: deps.random ?? Math.random,
    onEnded: (reason) => metrics.callsEnded.inc({ reason }),
    onHangupFailure: () => metrics.hangupFailures.inc(),
    // The usage ledger prices and caps calls; a test may stand another CallSpend in.
    spend: deps.spend ?? spend,
    sidebands,
  });
  let draining = false;
  metrics.watchCalls(() => calls.activeCount());
  metrics.watch({
    // What /readyz would answer (the draining plugin's 503 and the key check), at scrape time.
    ready: () => !draining && upstreamHealth.snapshot().status !== 'unauthorized',
    breakerState: () => breaker.state,
    rateLimitStore: () => sharedState.mode,
    pool,
    budget: () => budget.windows,
    droppedLogLines: () => logDestination?.droppedLines ?? 0,
    droppedAuditLines: () => logDestination?.droppedAuditLines ?? 0,
  });

  return {
    logger,
    logDestination,
    metrics,
    client,
    breaker,
    budget,
    minter,
    pool,
    upstreamHealth,
    redis,
    sharedState,
    calls,
    spend,
    start() {
      // Not awaited: the service answers (on in-process limits) while Redis connects.
      redis?.connect().catch(() => undefined);
      // The first upstream check at boot: a deploy with a bad key fails /readyz at its first probe,
      // and the first mint finds an open connection to OpenAI (no cold TLS handshake), kept warm.
      upstreamHealth.refresh();
      transport.keepWarm();
      pool?.start();
      calls.watch();
    },
    drain(withinMs) {
      draining = true;
      transport.drain(withinMs);
    },
    async close() {
      pool?.close();
      // Before the transport closes: hangups in flight finish; deadlines in Redis stay for the others.
      await calls.close();
      // Before Redis closes: what this replica counted locally reaches it.
      await spend.close();
      await upstreamHealth.settled();
      await transport.close();
      sharedState.close();
      if (redis) await redis.quit().catch(() => redis.disconnect());
      // The last lines out, if stdout takes them soon; a stuck stdout must not hold the exit.
      await logDestination?.flush(LOG_FLUSH_AT_EXIT_MS);
    },
  };
}
