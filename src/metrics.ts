import { Counter, Gauge, Registry, collectDefaultMetrics, type Metric } from 'prom-client';
import type { BreakerState } from './openai/circuit-breaker.js';
import { SHARED_STATE_MODES, type SharedStateMode } from './redis.js';
import type { PoolLabelStats, SecretPoolStats } from './realtime/secret-pool.js';

const BREAKER_VALUE: Record<BreakerState, number> = { closed: 0, half_open: 1, open: 2 };

/** One label set's buckets (counts per bound, not cumulative), sum and count. */
interface Series {
  labels: Record<string, string>;
  counts: number[];
  sum: number;
  count: number;
}

/**
 * A histogram with two labels that costs a lookup and two additions per observation, rendered by
 * the prom-client registry exactly as its own Histogram is. (prom-client's, even through a label
 * child, converts, validates and hashes the labels again on every observe: a few % of a mint.)
 */
export class LeanHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  /** By first label, then second: no key string built per observation. */
  private readonly series = new Map<string, Map<string, Series>>();
  /** The same, in the order they first appeared (prom-client's order). */
  private readonly ordered: Series[] = [];

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly labelNames: readonly [string, string],
    private readonly upperBounds: readonly number[],
    registry: Registry,
  ) {
    registry.registerMetric(this as unknown as Metric);
  }

  observe(first: string, second: string, value: number): void {
    if (!Number.isFinite(value)) return;
    let bySecond = this.series.get(first);
    if (!bySecond) {
      bySecond = new Map();
      this.series.set(first, bySecond);
    }
    let series = bySecond.get(second);
    if (!series) {
      series = { labels: { [this.labelNames[0]]: first, [this.labelNames[1]]: second }, counts: this.upperBounds.map(() => 0), sum: 0, count: 0 };
      bySecond.set(second, series);
      this.ordered.push(series);
    }
    const bounds = this.upperBounds;
    for (let i = 0; i < bounds.length; i++) {
      if (value <= bounds[i]!) {
        series.counts[i]! += 1;
        break;
      }
    }
    series.sum += value;
    series.count += 1;
  }

  reset(): void {
    this.series.clear();
    this.ordered.length = 0;
  }

  /** As prom-client's Histogram.get(): each value's labels whole (for JSON consumers). */
  get() {
    const rendered = this.getForPromString();
    return { ...rendered, values: rendered.values.map(({ labels, sharedLabels, ...value }) => ({ ...value, labels: { ...labels, ...sharedLabels } })) };
  }

  /** What the registry renders as text: cumulative buckets, +Inf, _sum and _count per label set. */
  getForPromString() {
    const values: { metricName: string; labels: Record<string, string | number>; sharedLabels: Record<string, string>; value: number }[] = [];
    for (const { labels, counts, sum, count } of this.ordered) {
      let cumulative = 0;
      this.upperBounds.forEach((upper, i) => {
        cumulative += counts[i]!;
        values.push({ metricName: `${this.name}_bucket`, labels: { le: upper }, sharedLabels: labels, value: cumulative });
      });
      values.push({ metricName: `${this.name}_bucket`, labels: { le: '+Inf' }, sharedLabels: labels, value: count });
      values.push({ metricName: `${this.name}_sum`, labels: {}, sharedLabels: labels, value: sum });
      values.push({ metricName: `${this.name}_count`, labels: {}, sharedLabels: labels, value: count });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }
}

/** Every metric of one app instance, on its own registry (so tests can build many apps). */
export class ServiceMetrics {
  readonly registry = new Registry();

  readonly mints = new Counter({
    name: 'realtime_token_mints_total',
    help: 'Client secret requests that reached the minting step, by model and outcome (minted, pooled, failed).',
    labelNames: ['model', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly refusals = new Counter({
    name: 'realtime_token_refusals_total',
    help: 'Requests answered with an error, by reason.',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly upstreamSeconds = new LeanHistogram(
    'openai_request_duration_seconds',
    'Duration of each attempt at an OpenAI call, by operation and outcome (HTTP status or failure kind).',
    ['operation', 'outcome'],
    [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10],
    this.registry,
  );

  readonly callStarts = new Counter({
    name: 'realtime_calls_started_total',
    help: 'Relayed calls (POST /v1/realtime/calls) that reached OpenAI, by model and outcome (started, failed).',
    labelNames: ['model', 'outcome'] as const,
    registers: [this.registry],
  });

  readonly callsEnded = new Counter({
    name: 'realtime_calls_ended_total',
    help:
      'Relayed calls ended, by reason: delete (DELETE by the client), deadline (MAX_CALL_SECONDS), spend (the client’s spend cap), ' +
      'budget (the global spend cap), sideband (no sideband while a cap is on), error (hangup given up), ' +
      'orphan (OpenAI created it after the service answered 504).',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });

  readonly sidebandEvents = new Counter({
    name: 'realtime_sideband_total',
    help: 'Sidebands of relayed calls: opened, reopened (after a drop), failed (not open within 5 s of being wanted).',
    labelNames: ['event'] as const,
    registers: [this.registry],
  });

  readonly lockCorrections = new Counter({
    name: 'realtime_session_lock_corrections_total',
    help: 'session.update events sent to restore instructions or max_output_tokens a page changed (LOCK_SESSION).',
    registers: [this.registry],
  });

  readonly hangupFailures = new Counter({
    name: 'realtime_call_hangup_failures_total',
    help: 'Hangups of relayed calls that failed after their retries (each is tried again later).',
    registers: [this.registry],
  });

  /** Sidebands open in this process, read at scrape time. */
  watchSidebands(openCount: () => number): void {
    for (const event of ['opened', 'reopened', 'failed'] as const) this.sidebandEvents.inc({ event }, 0);
    new Gauge({
      name: 'realtime_sideband_open',
      help: 'Sidebands of relayed calls open in this process.',
      registers: [this.registry],
      collect() {
        this.set(openCount());
      },
    });
  }

  countCallStart(model: string, outcome: 'started' | 'failed'): void {
    this.callStarts.inc({ model, outcome });
  }

  /** Active relayed calls, read at scrape time (from Redis when shared: the same on every replica). */
  watchCalls(activeCount: () => Promise<number>): void {
    new Gauge({
      name: 'realtime_calls_active',
      help: 'Relayed calls not yet ended (across replicas when REDIS_URL is set).',
      registers: [this.registry],
      async collect() {
        this.set(await activeCount());
      },
    });
  }

  // Label children looked up once per label set, not hashed again on every request.
  private readonly mintChildren = new Map<string, Counter.Internal>();

  countMint(model: string, outcome: 'minted' | 'pooled' | 'failed'): void {
    const key = `${model}\u0000${outcome}`;
    let child = this.mintChildren.get(key);
    if (!child) {
      child = this.mints.labels({ model, outcome });
      this.mintChildren.set(key, child);
    }
    child.inc();
  }

  observeUpstream(operation: string, outcome: string, seconds: number): void {
    this.upstreamSeconds.observe(operation, outcome, seconds);
  }

  constructor(collectProcessMetrics: boolean) {
    // The event-loop delay histogram samples every 100 ms, not prom-client's default 10: its
    // percentiles still catch a stalled loop, and an idle replica wakes 10 times a second, not 100.
    if (collectProcessMetrics) collectDefaultMetrics({ register: this.registry, eventLoopMonitoringPrecision: 100 });
  }

  /**
   * State that lives elsewhere (breaker, rate-limit store, pool) is read when /metrics is scraped,
   * not copied into the metrics on every change.
   */
  watch(sources: {
    ready: () => boolean;
    breakerState: () => BreakerState;
    rateLimitStore: () => SharedStateMode;
    pool: { readonly stats: SecretPoolStats; labelStats(): PoolLabelStats[] } | undefined;
    budget: () => readonly { window: string; limit: number; used: number }[];
    droppedLogLines: () => number;
    droppedAuditLines: () => number;
  }): void {
    const registers = [this.registry];
    new Gauge({
      name: 'realtime_ready',
      help: 'What /readyz would answer now: 1 ready, 0 not (OpenAI refused the key at its last check, or shutting down).',
      registers,
      collect() {
        this.set(sources.ready() ? 1 : 0);
      },
    });
    new Gauge({
      name: 'realtime_budget_used',
      help: 'Client secrets minted in the current window of each global budget (GLOBAL_MINTS_PER_MINUTE / _PER_DAY), as last counted.',
      labelNames: ['window'] as const,
      registers,
      collect() {
        for (const w of sources.budget()) this.set({ window: w.window }, w.used);
      },
    });
    new Gauge({
      name: 'realtime_budget_limit',
      help: 'Each global budget of client secrets per window.',
      labelNames: ['window'] as const,
      registers,
      collect() {
        for (const w of sources.budget()) this.set({ window: w.window }, w.limit);
      },
    });
    new Counter({
      name: 'log_lines_dropped_total',
      help: 'Log lines dropped because stdout was slower than they came (the buffer is bounded).',
      registers,
      collect() {
        this.reset();
        this.inc(sources.droppedLogLines());
      },
    });
    new Counter({
      name: 'log_audit_lines_dropped_total',
      help: 'Audit lines among them: only once the audit reserve (16 MiB past the 4 MiB buffer) is full too. Should stay 0.',
      registers,
      collect() {
        this.reset();
        this.inc(sources.droppedAuditLines());
      },
    });
    new Gauge({
      name: 'circuit_breaker_state',
      help: 'Circuit breaker in front of OpenAI: 0 closed, 1 half-open, 2 open.',
      registers,
      collect() {
        this.set(BREAKER_VALUE[sources.breakerState()]);
      },
    });
    new Gauge({
      name: 'rate_limit_store_mode',
      help: 'Which store keeps the rate-limit counters: 1 for the active one (memory, redis, or fallback = in-process while Redis is down).',
      labelNames: ['mode'] as const,
      registers,
      collect() {
        const active = sources.rateLimitStore();
        for (const mode of SHARED_STATE_MODES) this.set({ mode }, mode === active ? 1 : 0);
      },
    });
    const pool = sources.pool;
    if (!pool) return;
    new Gauge({
      name: 'token_pool_size',
      help: 'Warm client secrets waiting in the pool.',
      registers,
      collect() {
        this.set(pool.stats.size);
      },
    });
    new Counter({
      name: 'token_pool_requests_total',
      help: 'Poolable requests served from the warm pool (hit) or not (miss).',
      labelNames: ['result'] as const,
      registers,
      collect() {
        const stats = pool.stats;
        this.reset();
        this.inc({ result: 'hit' }, stats.hits);
        this.inc({ result: 'miss' }, stats.misses);
      },
    });
    // By configuration: at most the pool's label limit of configurations, the rest as "other".
    new Counter({
      name: 'token_pool_configuration_requests_total',
      help: 'Poolable requests by configuration (model|voice|difficulty|sport, or other) and result (hit, miss).',
      labelNames: ['configuration', 'result'] as const,
      registers,
      collect() {
        this.reset();
        for (const row of pool.labelStats()) {
          this.inc({ configuration: row.configuration, result: 'hit' }, row.hits);
          this.inc({ configuration: row.configuration, result: 'miss' }, row.misses);
        }
      },
    });
    new Counter({
      name: 'token_pool_wasted_total',
      help: 'Pooled secrets that went stale unused, by configuration (or other).',
      labelNames: ['configuration'] as const,
      registers,
      collect() {
        this.reset();
        for (const row of pool.labelStats()) this.inc({ configuration: row.configuration }, row.wasted);
      },
    });
    new Gauge({
      name: 'token_pool_configuration_size',
      help: 'Warm client secrets waiting in the pool, by configuration (or other).',
      labelNames: ['configuration'] as const,
      registers,
      collect() {
        this.reset();
        for (const row of pool.labelStats()) this.set({ configuration: row.configuration }, row.size);
      },
    });
  }
}
