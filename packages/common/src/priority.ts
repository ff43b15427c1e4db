/**
 * CPU priority of a whole process: every thread's nice value. Linux's
 * setpriority(PRIO_PROCESS, pid) sets one thread (the one whose id is pid),
 * and a Node process has a dozen (V8's platform workers, libuv's pool).
 *
 * With the scheduler's autogroups on (sched_autogroup_enabled, the default
 * of most distributions), a thread's nice value only weighs it against the
 * threads of its own session: each session's group gets an equal share of
 * the CPU first. A process that leads its own session (a shim) is niced
 * against everything else only when its group is too (/proc/<pid>/autogroup).
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { setPriority } from 'node:os';
import { parseProcStat } from '@ctr/sys/proc';

/** Sets every thread of `pid` (this process by default) to `nice`; threads that went meanwhile are skipped. */
export function renice(nice: number, pid = process.pid): void {
  let tids: string[];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return; // the process is gone
  }
  for (const tid of tids) {
    try {
      setPriority(Number(tid), nice);
    } catch {
      // The thread ended between the listing and here.
    }
  }
  try {
    // The session's group, when the process leads it.
    if (parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8')).session === pid)
      writeFileSync(`/proc/${pid}/autogroup`, String(nice));
  } catch {
    // No autogroups in this kernel, or the process is gone.
  }
}
