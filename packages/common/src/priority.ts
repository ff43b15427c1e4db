/**
 * CPU priority of a whole process: every thread's nice value. Linux's
 * setpriority(PRIO_PROCESS, pid) sets one thread (the one whose id is pid),
 * and a Node process has a dozen (V8's platform workers, libuv's pool).
 */
import { readdirSync } from 'node:fs';
import { setPriority } from 'node:os';

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
}
