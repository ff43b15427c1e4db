/**
 * A snapshot's disk usage as du counts it: allocated blocks and inodes of its
 * own tree, hard links counted once. A committed snapshot never changes, so
 * its usage is measured once, where its files were just written (the apply
 * worker: synchronous calls, off the daemon's event loop), and kept with its
 * record; an active one is measured when asked.
 */
import { lstatSync, readdirSync } from 'node:fs';
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

export interface Usage {
  size: number;
  inodes: number;
}

function counter() {
  // Only inodes with more than one link can be met twice (one tree, one file system).
  const linked = new Set<number>();
  let size = 0;
  let inodes = 0;
  return {
    /** Counts an entry; true when it is a directory to descend into. */
    add(st: { ino: number; nlink: number; blocks: number; isDirectory(): boolean }): boolean {
      if (st.nlink > 1 && !st.isDirectory()) {
        if (linked.has(st.ino)) return false;
        linked.add(st.ino);
      }
      inodes++;
      size += st.blocks * 512;
      return st.isDirectory();
    },
    result: (): Usage => ({ size, inodes }),
  };
}

export async function usage(dir: string): Promise<Usage> {
  const c = counter();
  const walk = async (d: string) => {
    for (const name of await readdir(d)) {
      const p = join(d, name);
      if (c.add(await lstat(p))) await walk(p);
    }
  };
  await walk(dir);
  return c.result();
}

/** The same, synchronously: for a worker thread. */
export function usageSync(dir: string): Usage {
  const c = counter();
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (c.add(lstatSync(p))) walk(p);
    }
  };
  walk(dir);
  return c.result();
}
