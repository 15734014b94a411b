// Loaded into a benchmark server with `--import` when a run is profiled (`npm run bench -- <name>
// --profile`): SIGUSR2 starts V8's sampling CPU profiler and allocation sampler, the next SIGUSR2
// stops them and writes $GANTRY_BENCH_PROFILE_DIR/<pid>-<n>.cpuprofile and .heapprofile. The benchmark opens and closes a window
// around each configuration it measures, so a profile holds that configuration's calls and no others
// (--cpu-prof profiles the whole process life: start-up, seeding and every configuration at once).
// Plain JavaScript so that it loads before, and apart from, the bundled server.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Session } from 'node:inspector/promises';
import process from 'node:process';

const dir = process.env.GANTRY_BENCH_PROFILE_DIR;
let session;
let written = 0;
// Signals are handled one at a time, but a handler awaits: chain them so a stop never overtakes its start.
let pending = Promise.resolve();

async function toggle() {
  if (!session) {
    session = new Session();
    session.connect();
    await session.post('Profiler.enable');
    // 100 µs: about ten samples per call of the cheapest path measured (a bare Echo, 30-60 µs).
    await session.post('Profiler.setSamplingInterval', { interval: 100 });
    await session.post('Profiler.start');
    // Allocations too, sampled every 32 KiB on average: what feeds the garbage collector.
    // Collected objects included: the garbage is the point.
    await session.post('HeapProfiler.startSampling', { samplingInterval: 32 * 1024, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    return;
  }
  const { profile } = await session.post('Profiler.stop');
  const { profile: heap } = await session.post('HeapProfiler.stopSampling');
  session.disconnect();
  session = undefined;
  const n = ++written;
  // The heap profile first: the benchmark waits for the CPU profile, so both are there when it reads.
  writeFileSync(join(dir, `${process.pid}-${n}.heapprofile`), JSON.stringify(heap));
  writeFileSync(join(dir, `${process.pid}-${n}.cpuprofile`), JSON.stringify(profile));
}

if (dir) {
  process.on('SIGUSR2', () => {
    pending = pending.then(toggle).catch((err) => process.stderr.write(`[bench profiler] ${err?.message ?? err}\n`));
  });
}
