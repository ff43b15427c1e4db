/**
 * Network namespaces from Node, the way `ip netns` and CNI's Go `ns` package
 * do them. A network namespace is a property of a thread, not of a process, so
 * switching the calling thread in and out is safe in a multi-threaded process
 * (unlike mount or user namespaces, which is why those stay in ctr-init).
 * Every switch here is synchronous and returns before any JavaScript runs:
 * libuv's threads never change namespace, and no callback ever runs inside one.
 */
import { closeSync, openSync, unlinkSync, writeFileSync } from 'node:fs';
import koffi from 'koffi';
import { libc, MNT, MS, mount, SysError, umount } from './libc.js';

const CLONE_NEWNET = 0x40000000;
const THREAD_NS = '/proc/thread-self/ns/net';

const c = {
  unshare: libc.func('int unshare(int flags)'),
  setns: libc.func('int setns(int fd, int nstype)'),
};

function setns(fd: number, what: string): void {
  if (c.setns(fd, CLONE_NEWNET) < 0) throw new SysError('setns', koffi.errno(), what);
}

/**
 * Runs `enter` (which moves the calling thread into another namespace), then
 * `fn`, and puts the thread back where it was, whatever happens. A thread left
 * in a container's namespace would be a silent disaster, so failing to come
 * back aborts the process.
 */
function away<T>(enter: () => void, fn: () => T): T {
  const orig = openSync(THREAD_NS, 'r');
  try {
    enter();
    try {
      return fn();
    } finally {
      try {
        setns(orig, 'back to the original namespace');
      } catch (err) {
        process.stderr.write(`fatal: ${(err as Error).message}\n`);
        process.abort();
      }
    }
  } finally {
    closeSync(orig);
  }
}

/**
 * Makes a new network namespace and keeps it alive by bind-mounting it on
 * `path` (created empty; it must not exist). The namespace has only `lo`, down.
 */
export function createNetns(path: string): void {
  writeFileSync(path, '', { flag: 'wx', mode: 0o444 });
  try {
    away(
      () => {
        if (c.unshare(CLONE_NEWNET) < 0) throw new SysError('unshare', koffi.errno(), 'CLONE_NEWNET');
      },
      () => mount(THREAD_NS, path, null, MS.BIND),
    );
  } catch (err) {
    unlinkSync(path);
    throw err;
  }
}

/** Unmounts and deletes a namespace made by createNetns; missing is fine. Its interfaces go with it. */
export function removeNetns(path: string): void {
  try {
    umount(path, MNT.DETACH);
  } catch (err) {
    if ((err as SysError).code !== 'EINVAL' && (err as SysError).code !== 'ENOENT') throw err;
  }
  try {
    unlinkSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/**
 * Runs `fn` with the calling thread inside the namespace at `path` and comes
 * back. `fn` must be synchronous: typically it opens a netlink socket, which
 * stays bound to that namespace after the thread has left it.
 */
export function inNetns<T>(path: string, fn: () => T): T {
  const target = openSync(path, 'r');
  try {
    return away(() => setns(target, path), fn);
  } finally {
    closeSync(target);
  }
}
