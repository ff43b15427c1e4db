/** Facts about processes from /proc, used to adopt and watch processes that are not our children. */
import { readFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';

export interface ProcStat {
  pid: number;
  comm: string;
  /** R, S, D, Z (zombie), T... */
  state: string;
  ppid: number;
  /** Its session's id: its own pid when it leads the session. */
  session: number;
  /** Start time in clock ticks after boot: with the pid, it names one process for good. */
  startTime: number;
}

export function parseProcStat(text: string): ProcStat {
  // comm is in parentheses and may itself contain spaces and parentheses.
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  const rest = text.slice(close + 2).split(' ');
  return {
    pid: Number(text.slice(0, open).trim()),
    comm: text.slice(open + 1, close),
    state: rest[0],
    ppid: Number(rest[1]),
    session: Number(rest[3]),
    startTime: Number(rest[19]),
  };
}

export async function readProcStat(pid: number): Promise<ProcStat | undefined> {
  try {
    // Read in place: a /proc file never blocks, and ctrd reads one per unit ten times a second, where
    // the thread pool's open, stat, read and close made its idle CPU 2%.
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return undefined;
  }
}

export async function readCmdline(pid: number): Promise<string[] | undefined> {
  try {
    const raw = await readFile(`/proc/${pid}/cmdline`, 'utf8');
    return raw.split('\0').filter((s, i, all) => s !== '' || i < all.length - 1);
  } catch {
    return undefined;
  }
}

/**
 * True when the process `pid` that started at `startTime` is still running
 * (not exited, not a zombie, and not a newer process that reused the pid).
 */
export async function processAlive(pid: number, startTime?: number): Promise<boolean> {
  const st = await readProcStat(pid);
  if (!st || st.state === 'Z' || st.state === 'X') return false;
  return startTime === undefined || st.startTime === startTime;
}

/** The pids of a process's children (every thread's: the kernel keeps the list per thread). */
export async function childrenOf(pid: number | 'self' = 'self'): Promise<number[]> {
  const out: number[] = [];
  try {
    for (const tid of await readdir(`/proc/${pid}/task`)) {
      const text = await readFile(`/proc/${pid}/task/${tid}/children`, 'utf8').catch(() => '');
      for (const p of text.split(' ')) if (p.trim()) out.push(Number(p));
    }
  } catch {
    // The process is gone.
  }
  return out;
}
