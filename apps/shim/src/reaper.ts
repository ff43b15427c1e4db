/**
 * The shim is its container's subreaper: processes whose parent dies are
 * re-parented to it, and it must wait for them or they stay zombies. Node
 * (libuv) waits only for the children it spawned, so this reaps the rest:
 * processes handed over by an external runtime (runc's container init and
 * `exec -d` processes, whose exit statuses are wanted) and any other orphan.
 * Every child the shim spawns is tracked here, so the sweep never steals a
 * child libuv is about to wait for.
 */
import type { ChildProcess } from 'node:child_process';
import { childrenOf, readProcStat, reapChild } from '@ctr/sys';

export class Reaper {
  #spawned = new Set<number>();
  #adopted = new Map<number, (status: number) => void>();
  /**
   * Orphans reaped before anyone adopted them, with their statuses: runc's
   * `exec -d` hands a process over by its pid file, which is read after the
   * process may have exited and been reaped here (its status was lost, 255).
   */
  #unclaimed = new Map<number, { status: number; at: number }>();
  #sweeping = false;
  #again = false;
  readonly #timer: NodeJS.Timeout;

  constructor() {
    // SIGCHLDs coalesce, but each starts a sweep of every child, which misses none of those it stood for.
    process.on('SIGCHLD', () => void this.sweep());
    // A last resort, rare: an idle shim that woke every second allocated as it swept, and its heap's
    // minor GCs then copied pages it shares with its zygote (some 1 MB more a shim after 30 s).
    this.#timer = setInterval(() => void this.sweep(), 30_000);
    this.#timer.unref();
  }

  /** A child Node spawned (libuv waits for it). Call right after spawn. */
  track(child: ChildProcess): void {
    const pid = child.pid;
    if (pid === undefined) return;
    this.#spawned.add(pid);
    child.once('exit', () => this.#spawned.delete(pid));
  }

  /** Waits for a re-parented process; resolves with its raw wait status. */
  adopt(pid: number): Promise<number> {
    const early = this.#unclaimed.get(pid);
    if (early) {
      this.#unclaimed.delete(pid);
      return Promise.resolve(early.status);
    }
    const p = new Promise<number>((resolve) => this.#adopted.set(pid, resolve));
    void this.sweep();
    return p;
  }

  /** Kept a minute (a pid is not reused that fast here), at most 1024. */
  #keepUnclaimed(pid: number, status: number) {
    const now = Date.now();
    this.#unclaimed.set(pid, { status, at: now });
    for (const [p, u] of this.#unclaimed) {
      if (this.#unclaimed.size <= 1024 && now - u.at < 60_000) break;
      this.#unclaimed.delete(p);
    }
  }

  async sweep(): Promise<void> {
    if (this.#sweeping) {
      this.#again = true;
      return;
    }
    this.#sweeping = true;
    try {
      do {
        this.#again = false;
        for (const [pid, resolve] of this.#adopted) {
          let status: number | undefined;
          try {
            status = reapChild(pid);
          } catch {
            // Not our child (any more): someone else waited. Nothing to learn.
            status = 255 << 8;
          }
          if (status === undefined) continue;
          this.#adopted.delete(pid);
          resolve(status);
        }
        for (const pid of await childrenOf('self')) {
          if (this.#spawned.has(pid) || this.#adopted.has(pid)) continue;
          if ((await readProcStat(pid))?.state !== 'Z') continue;
          // Adopted while its state was read: the adopted loop takes it on the next round.
          if (this.#adopted.has(pid)) {
            this.#again = true;
            continue;
          }
          try {
            const status = reapChild(pid);
            if (status !== undefined) this.#keepUnclaimed(pid, status);
          } catch {
            // Gone meanwhile.
          }
        }
      } while (this.#again);
    } finally {
      this.#sweeping = false;
    }
  }
}
