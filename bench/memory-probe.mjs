// Preloaded (`node --import ./bench/memory-probe.mjs`) into both the service and the baseline by
// `BENCH_ONLY=memory`: where a process's peak resident memory sits. Every 50 ms it keeps the highest
// RSS and size of each V8 heap space; after each full GC, what the old space still holds (its live
// part). At exit it writes them (MB) as JSON to MEMORY_PROBE_FILE. Plain JavaScript: it must load
// into plain node.
import { writeFileSync } from 'node:fs';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { setInterval } from 'node:timers';
import v8 from 'node:v8';

const file = process.env.MEMORY_PROBE_FILE;
if (file) {
  const peak = { rss: 0, v8Heap: 0 };
  let oldLiveAfterFullGc = 0;
  const oldSpaceUsed = () => v8.getHeapSpaceStatistics().find((space) => space.space_name === 'old_space')?.space_used_size ?? 0;

  const sample = () => {
    peak.rss = Math.max(peak.rss, process.memoryUsage.rss());
    let heap = 0;
    for (const space of v8.getHeapSpaceStatistics()) {
      heap += space.physical_space_size;
      peak[space.space_name] = Math.max(peak[space.space_name] ?? 0, space.physical_space_size);
    }
    peak.v8Heap = Math.max(peak.v8Heap, heap);
  };
  setInterval(sample, 50).unref();

  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      if (entry.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) oldLiveAfterFullGc = oldSpaceUsed();
    }
  }).observe({ entryTypes: ['gc'] });

  process.on('exit', () => {
    sample();
    const mb = (bytes) => Math.round((bytes / 1048576) * 10) / 10;
    writeFileSync(
      file,
      JSON.stringify({
        rss: mb(peak.rss),
        v8Heap: mb(peak.v8Heap),
        newSpace: mb(peak.new_space ?? 0),
        oldSpace: mb(peak.old_space ?? 0),
        oldLiveAfterFullGc: mb(oldLiveAfterFullGc),
      }),
    );
  });
}
