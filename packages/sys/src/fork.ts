/**
 * fork(2) of a Node process, for one purpose: a shim zygote (apps/shim's
 * zygote.ts) that has loaded and compiled the shim once, and from then on
 * makes each new shim a copy of itself in a few milliseconds instead of a
 * Node boot of some 60 ms of CPU, its heap shared copy-on-write.
 *
 * A fork keeps only the calling thread, so this is safe only in a process
 * made for it: V8 run with --single-threaded (no GC or compiler work posted
 * to worker threads that the child does not have), no work in libuv's thread
 * pool at the time of the fork (glibc's fork runs libuv's atfork hook, which
 * lets the child start a pool of its own), and nothing else in flight.
 *
 * Two things make the child work at all:
 * - V8 maps its heap MADV_DONTFORK, so a child would have none and crash at
 *   its first touch of it. Every private anonymous mapping is marked
 *   MADV_DOFORK before the fork (a no-op on those without the mark).
 * - The child shares libuv's epoll instance, signal pipe and async wakeup
 *   with its parent; uv_loop_fork gives it its own before any of them is used.
 *
 * What stays the parent's in the child is for the caller to put right:
 * process.pid (Node reads it once, at boot), the descriptors it inherited,
 * and anything seeded once per process.
 */
import { readFileSync } from 'node:fs';
import koffi from 'koffi';
import { libc, SysError } from './libc.js';

const c = {
  fork: libc.func('int fork(void)'),
  madvise: libc.func('int madvise(uintptr_t addr, size_t length, int advice)'),
  setsid: libc.func('int setsid(void)'),
  dup2: libc.func('int dup2(int oldfd, int newfd)'),
  getpid: libc.func('int getpid(void)'),
};

/** libuv, as Node itself exports it: the program's own symbols. */
let uv: { defaultLoop: () => unknown; loopFork: (loop: unknown) => number } | undefined;
function libuv() {
  if (!uv) {
    const self = koffi.load(null);
    uv = {
      defaultLoop: self.func('void *uv_default_loop(void)'),
      loopFork: self.func('int uv_loop_fork(void *loop)'),
    };
  }
  return uv;
}

const MADV_DOFORK = 11;

/** Every private anonymous mapping (V8's heap among them) is given to a child again. */
function markHeapForFork(): void {
  for (const line of readFileSync('/proc/self/maps', 'latin1').split('\n')) {
    // "start-end perms offset dev inode [path]": anonymous ones have inode 0 and no path.
    const f = line.split(/\s+/, 6);
    // Reserved (PROT_NONE) ones too: V8 commits those as its heap grows.
    if (f.length < 5 || f[4] !== '0' || f[5] || !f[1].endsWith('p')) continue;
    const [start, end] = f[0].split('-');
    const from = BigInt(`0x${start}`);
    c.madvise(from, BigInt(`0x${end}`) - from, MADV_DOFORK);
  }
}

/**
 * fork(2): the child's pid in the parent; 0 in the child, whose event loop
 * is its own already. Call it from the main thread, with nothing of this
 * process's in libuv's thread pool.
 */
export function forkNode(): number {
  const { defaultLoop, loopFork } = libuv(); // loaded before the fork, so the child need not
  markHeapForFork();
  const pid = c.fork();
  if (pid < 0) throw new SysError('fork', koffi.errno(), 'of a shim');
  if (pid === 0) {
    const r = loopFork(defaultLoop());
    // A child without a loop of its own would steal its parent's events: it cannot go on.
    if (r !== 0) {
      process.stderr.write(`uv_loop_fork: ${r}\n`);
      process.exit(70);
    }
  }
  return pid;
}

/** setsid(2): the caller leads a new session (and process group) of its own. */
export function setsid(): void {
  if (c.setsid() < 0) throw new SysError('setsid', koffi.errno(), '');
}

/** dup2(2). */
export function dup2(from: number, to: number): void {
  if (c.dup2(from, to) < 0) throw new SysError('dup2', koffi.errno(), `${from} to ${to}`);
}

/** getpid(2): this process's pid, which process.pid is not in a forked child. */
export function getpid(): number {
  return c.getpid();
}
