// What the benchmarks read from /proc and how they pin processes to cores: CPU time of a process, of
// its threads and of its waited-for children, and taskset. One module so lib.ts, load.ts and
// profile.ts (which lib.ts imports) share one parser of /proc/<pid>/stat.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** Linux's USER_HZ, the unit of /proc/<pid>/stat times; 100 on every mainstream kernel. */
const CLOCK_TICKS_PER_SEC = 100;

/**
 * Fields of a /proc stat file after the command name (which may hold spaces), so that index 0 is
 * field 3 (state): utime and stime (fields 14, 15) are at 11 and 12, cutime and cstime at 13 and 14.
 */
function statFields(path: string): string[] {
  const stat = readFileSync(path, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

const seconds = (fields: string[], at: number) => (Number(fields[at]) + Number(fields[at + 1])) / CLOCK_TICKS_PER_SEC;

/** CPU seconds (user + system) a process has used so far. */
export function cpuSeconds(pid: number): number {
  return seconds(statFields(`/proc/${pid}/stat`), 11);
}

/** CPU seconds of this process's children that have exited and been waited for (cutime + cstime). */
export function childrenCpuSeconds(): number {
  return seconds(statFields('/proc/self/stat'), 13);
}

/** CPU seconds of processes that may exit meanwhile (a backend the pool closed counts as 0). */
export function cpuOf(pids: readonly number[]): number {
  let sum = 0;
  for (const pid of pids) {
    try {
      sum += cpuSeconds(pid);
    } catch {
      // exited
    }
  }
  return sum;
}

/**
 * CPU seconds so far of a process's main thread (its tid is its pid) and of all its other threads,
 * from /proc/<pid>/task/<tid>/stat (Node 22 leaves its threads unnamed, so they are not told apart).
 * A thread that exits within a window takes its time with it.
 */
export function threadCpu(pid: number): { main: number; others: number } {
  let main = 0;
  let others = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let s: number;
    try {
      s = seconds(statFields(`/proc/${pid}/task/${tid}/stat`), 11);
    } catch {
      continue; // exited meanwhile
    }
    if (tid === String(pid)) main += s;
    else others += s;
  }
  return { main, others };
}

/**
 * Whether the benchmarks pin processes: each server to its own core instead (server on 0, load
 * generator on 1) when taskset exists and there are >= 2.
 */
export const pinning = availableParallelism() >= 2 && existsSync('/usr/bin/taskset');

/**
 * Pins every thread of a running process to `cpu` (a CPU number or a taskset list such as "0,1");
 * a no-op without pinning, and for a process that has exited meanwhile. For servers whose start-up
 * is heavy (PGlite's initdb, module loading): they start on all cores and are pinned once ready,
 * before any measurement; threads created later inherit the pinning.
 */
export function pinProcess(pid: number, cpu: number | string): void {
  if (!pinning) return;
  try {
    execFileSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { stdio: 'ignore' });
  } catch (err) {
    if (existsSync(`/proc/${pid}`)) throw err;
  }
}
