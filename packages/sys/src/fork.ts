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
 *   its first touch of it. Every mapping is marked MADV_DOFORK just before
 *   the fork (a no-op on those without the mark).
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
  exit: libc.func('void exit(int status)'),
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
const EINVAL = 22;
/** The end of user address space on x86-64 (and the page-aligned start of the search). */
const USER_END = 0x7ffffffff000n;

/** The mappings madvise must not be given: I/O ones (vvar, io_uring's rings, devices), which refuse it. */
function ioMappings(): [bigint, bigint][] {
  const out: [bigint, bigint][] = [];
  for (const line of readFileSync('/proc/self/maps', 'latin1').split('\n')) {
    // "start-end perms offset dev inode [path]"
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ \S+\s*(.*)$/.exec(line);
    const path = m?.[3] ?? '';
    if (!m || !(path.startsWith('[v') || path.startsWith('anon_inode:') || path.startsWith('/dev/'))) continue;
    out.push([BigInt(`0x${m[1]}`), BigInt(`0x${m[2]}`)]);
  }
  return out.sort((a, b) => (a[0] < b[0] ? -1 : 1));
}

/**
 * The ranges (start, length) to give every mapping (V8's heap among them) to a child again
 * in: the whole address space but its I/O mappings, a few madvise calls.
 * Per range rather than per mapping found, so that a heap page V8 maps
 * after the list was read (a GC can, at any allocation) is covered as well.
 */
function forkRanges(): [bigint, bigint][] {
  let from = 0n;
  const ranges: [bigint, bigint][] = [];
  for (const [start, end] of ioMappings()) {
    if (start > from) ranges.push([from, start]);
    if (end > from) from = end;
  }
  if (from < USER_END) ranges.push([from, USER_END]);
  return ranges.map(([start, end]) => [start, end - start]);
}

/** Marks `ranges` MADV_DOFORK; false if one holds a mapping that refuses it (EINVAL: an I/O one). */
function markForFork(ranges: [bigint, bigint][]): boolean {
  // The gaps between mappings make madvise say ENOMEM, having marked the rest.
  for (const [start, length] of ranges)
    if (c.madvise(start, length, MADV_DOFORK) < 0 && koffi.errno() === EINVAL) return false;
  return true;
}

/**
 * The ranges of the last fork, kept: a process's I/O mappings (vvar, vdso,
 * io_uring's rings) are made as it starts. Reading /proc/self/maps again
 * for every fork filled the zygote's young generation with its lines, pages
 * the shim forked before then held copies of, its own: some 60 KB of each
 * shim's PSS.
 */
let known: [bigint, bigint][] | undefined;

/** Ranges checked once here; forkNode marks them all again just before the fork, with nothing between that could allocate. */
function checkedRanges(): [bigint, bigint][] {
  if (known && markForFork(known)) return known;
  known = forkRanges();
  if (!markForFork(known)) throw new SysError('madvise', EINVAL, 'MADV_DOFORK of a mapping outside the I/O ones');
  return known;
}

/**
 * fork(2): the child's pid in the parent; 0 in the child, whose event loop
 * is its own already. Call it from the main thread, with nothing of this
 * process's in libuv's thread pool.
 */
export function forkNode(): number {
  const { defaultLoop, loopFork } = libuv(); // loaded before the fork, so the child need not
  const ranges = checkedRanges();
  for (const [start, length] of ranges) c.madvise(start, length, MADV_DOFORK);
  const pid = c.fork();
  if (pid < 0) throw new SysError('fork', koffi.errno(), 'of a shim');
  if (pid === 0) {
    exitWithoutTeardown();
    const r = loopFork(defaultLoop());
    // A child without a loop of its own would steal its parent's events: it cannot go on.
    if (r !== 0) {
      process.stderr.write(`uv_loop_fork: ${r}\n`);
      process.exit(70);
    }
  }
  return pid;
}

/**
 * Node's teardown at exit stops the platform's threads, which a forked child
 * does not have: it would crash there (SIGSEGV) and lose its exit status. So
 * the child ends through the C library's exit() instead, on every way out:
 * process.exit (through process.reallyExit), a loop with nothing left to do,
 * and an exception nobody handles (Node's own handling ends in teardown).
 */
function exitWithoutTeardown(): void {
  const exit = c.exit;
  (process as unknown as { reallyExit: (code?: number) => void }).reallyExit = (code) => exit(code ?? 0);
  process.on('beforeExit', (code) => process.exit(code));
  process.on('uncaughtException', (err) => {
    if (process.listenerCount('uncaughtException') > 1) return; // the program's own handler has it
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exit(1);
  });
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
