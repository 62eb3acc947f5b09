// The realistic scenario (issue 14): what a user waits for between pressing the button and getting a
// secret (time to token), under traffic shaped like the extension's, with the demand-following pool.
// Three runs, seeded differently, each against a fresh service; each is judged against the goals.
// Standalone: `npm run build && npx tsx bench/realistic.ts`, or `BENCH_ONLY=realistic npm run bench`.
//
// - OpenAI (the fake) answers in 200-400 ms (uniform: 300 +- 100 ms), on loopback.
// - Poisson arrivals, ARRIVALS_PER_SECOND on average.
// - 25 % the default session; 70 % over five popular configurations (30/25/20/15/10 % of that 70 %);
//   5 % long tail (random sport, voice and difficulty; a third of them with free-text instructions,
//   which are never pooled).
// - TOKEN_POOL_SIZE 20, TOKEN_POOL_REFILL_PER_SECOND 25.
// - TOKEN_TTL_SECONDS 60 with 20 s minimum left: a pooled secret is usable for 40 s, so secrets minted
//   in the first 50 s of a 90 s run can go stale inside it and waste is measured, not assumed (with
//   the 120/30 of earlier runs nothing could go stale before the run ended). A short usable life
//   only makes waste likelier, so the figure per TTL window is an upper bound for longer TTLs.
import { loadavg } from 'node:os';
import { Pool } from 'undici';
import { DEFAULT_VOICES } from '../src/config.js';
import { cpuMs, ORIGIN, peakRssMb, quantile, startFake, startService, stop } from './support.js';

const ARRIVALS_PER_SECOND = Number(process.env.BENCH_ARRIVALS ?? 20);
const WARMUP_S = Number(process.env.BENCH_REALISTIC_WARMUP ?? 15);
const MEASURE_S = Number(process.env.BENCH_REALISTIC_SECONDS ?? 75);
const RUNS = Number(process.env.BENCH_REALISTIC_RUNS ?? 3);
const POOL_SIZE = 20;
const REFILL_CAP = 25;
const TTL_S = 60;
const MIN_REMAINING_S = 20;
// No upstream answer comes faster than 200 ms: anything well below was served from the pool.
const HIT_BELOW_MS = 100;
const GOALS = { p90BelowMs: 50, fromPoolAtLeast: 0.93, wastedPerTtlWindowAtMost: POOL_SIZE };

type Body = Record<string, string>;
interface Sample {
  kind: 'default' | 'popular' | 'tail';
  ms: number;
  status: number;
}

/** The five popular configurations and their share of the popular 70 %. */
const POPULAR: [Body, number][] = [
  [{ difficulty: 'savage', sport: 'nba' }, 0.3],
  [{ difficulty: 'easy', sport: 'nfl' }, 0.25],
  [{ difficulty: 'expert', sport: 'premier league' }, 0.2],
  [{ difficulty: 'savage', sport: 'nfl' }, 0.15],
  [{ difficulty: 'easy', sport: 'nba' }, 0.1],
];
const SPORTS = ['mlb', 'nhl', 'la liga', 'serie a', 'bundesliga', 'ligue 1', 'mls', 'wnba', 'ncaa football', 'ncaa basketball',
  'f1', 'nascar', 'indycar', 'motogp', 'tennis', 'golf', 'ufc', 'boxing', 'cricket', 'rugby', 'afl', 'cycling', 'darts',
  'snooker', 'volleyball', 'handball', 'curling', 'esports', 'champions league', 'euroleague'];
const DIFFICULTIES = ['easy', 'savage', 'expert'];

/** Seeded: a run's traffic is reproducible, and the three runs differ. */
function mulberry32(seed: number): () => number {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function nextRequest(random: () => number): { kind: Sample['kind']; body: Body } {
  const pick = <T>(list: readonly T[]) => list[Math.floor(random() * list.length)] as T;
  const r = random();
  if (r < 0.25) return { kind: 'default', body: {} };
  if (r < 0.95) {
    let share = (r - 0.25) / 0.7;
    for (const [body, weight] of POPULAR) {
      if (share < weight) return { kind: 'popular', body };
      share -= weight;
    }
    return { kind: 'popular', body: POPULAR.at(-1)![0] };
  }
  const body: Body = { sport: pick(SPORTS), voice: pick(DEFAULT_VOICES), difficulty: pick(DIFFICULTIES) };
  if (random() < 1 / 3) body.instructions = 'Keep it short, and mention the score often.';
  return { kind: 'tail', body };
}

interface PoolInfo {
  hits: number;
  misses: number;
  expired: number;
}

async function poolInfo(url: string): Promise<PoolInfo> {
  const root = (await (await fetch(`${url}/`)).json()) as { token_pool?: PoolInfo };
  return root.token_pool ?? { hits: 0, misses: 0, expired: 0 };
}

/** Upstream mint attempts so far, from the service's own histogram. */
async function upstreamMints(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let total = 0;
  for (const match of text.matchAll(/^openai_request_duration_seconds_count\{operation="client_secrets"[^}]*\} (\d+)$/gm)) {
    total += Number(match[1]);
  }
  return total;
}

// A send this late was held up by the machine (other work on the shared cores), not by the service.
const LATE_MS = 30;

/**
 * Poisson arrivals for `seconds`; resolves with every request once all are back (failures
 * included), and how many were sent more than LATE_MS after their time.
 */
async function drive(url: string, seconds: number, random: () => number): Promise<{ samples: Sample[]; late: number }> {
  const client = new Pool(url, { connections: 256, pipelining: 1 });
  const samples: Sample[] = [];
  let late = 0;
  const pending: Promise<void>[] = [];
  const started = performance.now();
  let at = 0;
  for (;;) {
    at += (-Math.log(1 - random()) / ARRIVALS_PER_SECOND) * 1000;
    if (at >= seconds * 1000) break;
    const wait = started + at - performance.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    if (performance.now() - started - at > LATE_MS) late += 1;
    const { kind, body } = nextRequest(random);
    const sent = performance.now();
    pending.push(
      client
        .request({
          method: 'POST',
          path: '/v1/realtime/token',
          headers: { origin: ORIGIN, 'content-type': 'application/json' },
          body: JSON.stringify(body),
        })
        .then(
          async (response) => {
            await response.body.dump();
            samples.push({ kind, ms: performance.now() - sent, status: response.statusCode });
          },
          () => void samples.push({ kind, ms: performance.now() - sent, status: 0 }),
        ),
    );
  }
  await Promise.all(pending);
  await client.close();
  return { samples, late };
}

interface RunFigures {
  label: string;
  seed: number;
  requests: number;
  p50: number;
  p90: number;
  p99: number;
  /** Answered in under HIT_BELOW_MS, over all requests. */
  fromPool: number;
  hotFromPool: number;
  /** The pool's own count of hits, and as a share of all requests. */
  poolHits: number;
  poolHitShare: number;
  wasted: number;
  wastedPerTtlWindow: number;
  upstreamPerSecond: number;
  cpuUsPerRequest: number;
  rssMb: number;
  errors: number;
  /** Sends more than LATE_MS behind schedule, and the 1-minute load average at the end: how busy the machine was. */
  lateSends: number;
  load: number;
}

async function run(fakeUrl: string, label: string, seed: number, env: Record<string, string>): Promise<RunFigures> {
  const service = await startService(fakeUrl, {
    TOKEN_POOL_SIZE: String(POOL_SIZE),
    TOKEN_TTL_SECONDS: String(TTL_S),
    TOKEN_POOL_MIN_REMAINING_SECONDS: String(MIN_REMAINING_S),
    TOKEN_POOL_REFILL_PER_SECOND: String(REFILL_CAP),
    ...env,
  });
  // Warm-up (not counted: the pool learns what is asked for), then the measured run.
  const random = mulberry32(seed);
  await drive(service.url, WARMUP_S, random);
  const before = await poolInfo(service.url);
  const upstreamBefore = await upstreamMints(service.url);
  const cpuBefore = cpuMs(service.child.pid!);
  const { samples, late } = await drive(service.url, MEASURE_S, random);
  const load = loadavg()[0] ?? 0;
  const cpuUsed = cpuMs(service.child.pid!) - cpuBefore;
  const after = await poolInfo(service.url);
  const upstream = (await upstreamMints(service.url)) - upstreamBefore;
  const rssMb = peakRssMb(service.child.pid!);
  await stop(service);

  // Every request counts towards the percentiles: a failure is as slow as it took, never dropped.
  const sorted = samples.map((s) => s.ms).sort((a, b) => a - b);
  const hot = samples.filter((s) => s.kind !== 'tail');
  const fast = (list: Sample[]) => list.filter((s) => s.status === 200 && s.ms < HIT_BELOW_MS).length / Math.max(1, list.length);
  const wasted = after.expired - before.expired;
  const poolHits = after.hits - before.hits;
  return {
    label,
    seed,
    requests: samples.length,
    p50: quantile(sorted, 0.5),
    p90: quantile(sorted, 0.9),
    p99: quantile(sorted, 0.99),
    fromPool: fast(samples),
    hotFromPool: fast(hot),
    poolHits,
    poolHitShare: poolHits / Math.max(1, samples.length),
    wasted,
    wastedPerTtlWindow: (wasted * TTL_S) / MEASURE_S,
    upstreamPerSecond: upstream / MEASURE_S,
    cpuUsPerRequest: (cpuUsed * 1000) / Math.max(1, samples.length),
    rssMb,
    errors: samples.filter((s) => s.status !== 200).length,
    lateSends: late,
    load,
  };
}

/** The goals a run missed, empty when it met them all. */
function missedGoals(r: RunFigures): string[] {
  const missed: string[] = [];
  if (!(r.p90 < GOALS.p90BelowMs)) missed.push(`p90 ${r.p90.toFixed(0)} ms >= ${GOALS.p90BelowMs}`);
  if (r.fromPool < GOALS.fromPoolAtLeast) missed.push(`from the pool ${(r.fromPool * 100).toFixed(1)} % < ${GOALS.fromPoolAtLeast * 100} %`);
  if (r.wastedPerTtlWindow > GOALS.wastedPerTtlWindowAtMost) missed.push(`wasted ${r.wastedPerTtlWindow.toFixed(1)} / window > ${POOL_SIZE}`);
  if (r.errors > 0) missed.push(`${r.errors} errors`);
  return missed;
}

export async function realisticFigures(): Promise<string[]> {
  const fake = await startFake(200, 200);
  const runs: [string, number, Record<string, string>][] = Array.from({ length: RUNS }, (_, i) => [`run ${i + 1}`, 11 + 1000 * i, {}]);
  // BENCH_REALISTIC_COMPARE=1 adds one run with the pool off and one with the default-only pool.
  if (process.env.BENCH_REALISTIC_COMPARE === '1') {
    runs.push(['pool off', 11, { TOKEN_POOL_SIZE: '0' }], ['default-only pool', 11, { TOKEN_POOL_MODE: 'default' }]);
  }
  const results: RunFigures[] = [];
  for (const [label, seed, env] of runs) {
    results.push(await run(fake.url, label, seed, env));
    const r = results.at(-1)!;
    process.stderr.write(`realistic ${label} (seed ${seed}): ${JSON.stringify(r)} ${missedGoals(r).join('; ') || 'goals met'}\n`);
  }
  await stop(fake);
  const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
  const ms = (x: number) => (x < 10 ? x.toFixed(2) : x.toFixed(0));
  const judged = results.filter((r) => r.label.startsWith('run'));
  const met = judged.filter((r) => missedGoals(r).length === 0).length;
  return [
    '## Realistic traffic: time to token',
    '',
    `bench/realistic.ts, ${judged.length} runs, each seeded differently, each against a fresh service. OpenAI (fake) answers in 200-400 ms`,
    `(uniform). Poisson arrivals at ${ARRIVALS_PER_SECOND} req/s: 25 % default; 70 % over five popular configurations`,
    '(savage/nba, easy/nfl, expert/premier league, savage/nfl, easy/nba: 30/25/20/15/10 % of the 70 %); 5 % long tail',
    `(random sport of 30, voice and difficulty; a third with free-text instructions, never pooled). ${WARMUP_S} s warm-up (not`,
    `counted), then ${MEASURE_S} s measured. \`TOKEN_POOL_SIZE=${POOL_SIZE}\`, \`TOKEN_POOL_REFILL_PER_SECOND=${REFILL_CAP}\`,`,
    `\`TOKEN_TTL_SECONDS=${TTL_S}\` and \`TOKEN_POOL_MIN_REMAINING_SECONDS=${MIN_REMAINING_S}\`: a pooled secret is usable for`,
    `${TTL_S - MIN_REMAINING_S} s, so secrets go stale inside a run and waste is measured (per ${TTL_S} s TTL window: an upper bound`,
    'for longer TTLs). Time to token: from sending the request to the last byte of the answer, at the client, every request',
    `counted. From the pool: answered (200) in under ${HIT_BELOW_MS} ms, over all requests (no mint comes back in under 200 ms:`,
    "it was served from the pool, or by a refill about to land); the pool's own hit count has only the former. \"Six hot\" =",
    'the default and the five popular configurations (95 % of the traffic). CPU µs/req and peak RSS: the service process.',
    `Machine: late sends = requests the load generator sent over ${LATE_MS} ms behind schedule; load = 1-minute load average at`,
    'the end of the run (the cores are shared): a busy machine delays answers from the pool too.',
    `Goals (issue 14): p90 < ${GOALS.p90BelowMs} ms, at least ${GOALS.fromPoolAtLeast * 100} % from the pool, at most ${POOL_SIZE} (the pool's size) wasted per TTL window.`,
    '',
    '| run (seed) | requests | p50 | p90 | p99 | from the pool | six hot from the pool | pool hits (share of all) | wasted (per TTL window) | OpenAI mints/s | CPU µs/req | peak RSS MB | errors | machine | goals |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...results.map((r) => {
      const missed = missedGoals(r);
      return `| ${r.label} (${r.seed}) | ${r.requests} | ${ms(r.p50)} | ${ms(r.p90)} | ${ms(r.p99)} | ${pct(r.fromPool)} | ${pct(r.hotFromPool)} | ${r.poolHits} (${pct(r.poolHitShare)}) | ${r.wasted} (${r.wastedPerTtlWindow.toFixed(1)}) | ${r.upstreamPerSecond.toFixed(1)} | ${Math.round(r.cpuUsPerRequest)} | ${r.rssMb} | ${r.errors} | ${r.lateSends} late sends, load ${r.load.toFixed(1)} | ${missed.length === 0 ? 'met' : `missed: ${missed.join('; ')}`} |`;
    }),
    '',
    `Goals met in ${met} of ${judged.length} runs.`,
    '',
  ];
}

if (import.meta.url === `file://${process.argv[1]}`) {
  for (const line of await realisticFigures()) process.stdout.write(`${line}\n`);
}
