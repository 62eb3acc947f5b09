// Preloaded (`node --import ./bench/memory-probe.mjs`) into both the service and the baseline by
// `BENCH_ONLY=memory`: where a process's peak resident memory sits. Every 50 ms it samples RSS and
// the V8 heap; it keeps the highest RSS with the heap at that moment (the rest of it is outside the
// V8 heap: native memory), the highest new and old space, and after each full GC what the old space
// still holds (its live part). At exit it writes them (MB) as JSON to MEMORY_PROBE_FILE. Plain
// JavaScript: it must load into plain node.
import { writeFileSync } from 'node:fs';
import { constants, PerformanceObserver } from 'node:perf_hooks';
import { setInterval } from 'node:timers';
import v8 from 'node:v8';

const file = process.env.MEMORY_PROBE_FILE;
if (file) {
  const peak = { rss: 0, v8HeapAtRssPeak: 0, newSpace: 0, oldSpace: 0 };
  let oldLiveAfterFullGc = 0;

  const sample = () => {
    const rss = process.memoryUsage.rss();
    let heap = 0;
    for (const space of v8.getHeapSpaceStatistics()) {
      heap += space.physical_space_size;
      if (space.space_name === 'new_space') peak.newSpace = Math.max(peak.newSpace, space.physical_space_size);
      if (space.space_name === 'old_space') peak.oldSpace = Math.max(peak.oldSpace, space.physical_space_size);
    }
    if (rss > peak.rss) {
      peak.rss = rss;
      peak.v8HeapAtRssPeak = heap;
    }
  };
  setInterval(sample, 50).unref();

  new PerformanceObserver((list) => {
    if (list.getEntries().some((entry) => entry.detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR)) {
      oldLiveAfterFullGc = v8.getHeapSpaceStatistics().find((space) => space.space_name === 'old_space')?.space_used_size ?? 0;
    }
  }).observe({ entryTypes: ['gc'] });

  process.on('exit', () => {
    sample();
    const mb = (bytes) => Math.round((bytes / 1048576) * 10) / 10;
    writeFileSync(
      file,
      JSON.stringify({
        rss: mb(peak.rss),
        v8HeapAtRssPeak: mb(peak.v8HeapAtRssPeak),
        outsideV8AtRssPeak: mb(peak.rss - peak.v8HeapAtRssPeak),
        newSpace: mb(peak.newSpace),
        oldSpace: mb(peak.oldSpace),
        oldLiveAfterFullGc: mb(oldLiveAfterFullGc),
      }),
    );
  });
}
