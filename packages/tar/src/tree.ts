/**
 * A file tree as a tar stream, read through directory fds: every entry is
 * reached from its parent directory's fd (openat2 RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS, O_NOFOLLOW), never by joining path strings, so a tree
 * that changes while it is read (a running container swapping a directory
 * for a symlink to `/`) cannot send a file from outside it. What changed
 * under the walk is skipped, never followed.
 *
 * Used for a snapshot's layer (`overlay`: whiteouts and opaque directories
 * turned back into `.wh.` entries) and for `cp` out of a container.
 */
import { fstatSync, readSync } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { closeFd, lgetxattr, llistxattr, O, openat2, RESOLVE, type SysError } from '@ctr/sys';
import type { Timespec } from './types.js';
import { type EntryInit, header, padding, trailer } from './writer.js';

const STRICT = RESOLVE.BENEATH | RESOLVE.NO_SYMLINKS | RESOLVE.NO_MAGICLINKS;
const O_NONBLOCK = 0o4000;
const OVERLAY_XATTR = /^trusted\.overlay\./;
const CHUNK = 1 << 20;

const proc = (fd: number, name = '') => `/proc/self/fd/${fd}${name ? `/${name}` : ''}`;
const ts = (ns: bigint): Timespec => ({ sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) });

export interface TreeOptions {
  /** Overlay upper semantics: 0:0 character devices are whiteouts, `trusted.overlay.opaque` marks opaque directories. */
  overlay?: boolean;
  /** Owner written for every entry instead of the file's own (cp without -a writes root's). */
  owner?: { uid: number; gid: number };
}

function xattrsOf(path: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const name of llistxattr(path)) {
    if (OVERLAY_XATTR.test(name) || name === 'security.selinux') continue;
    const v = lgetxattr(path, name);
    if (v) out.set(name, v);
  }
  return out;
}

/** Opens `name` in `dirfd` without following anything; undefined when it vanished or changed kind. */
function openIn(dirfd: number, name: string, flags: number): number | undefined {
  try {
    return openat2(dirfd, name, flags | O.NOFOLLOW, 0, STRICT);
  } catch (err) {
    const code = (err as SysError).code;
    if (code === 'ENOENT' || code === 'ELOOP' || code === 'ENOTDIR' || code === 'ENXIO') return undefined;
    throw err;
  }
}

class TreeWriter {
  readonly #links = new Map<string, string>();
  constructor(private readonly opts: TreeOptions) {}

  /** The entry `name` of `dirfd`, written as `tarPath` (and its tree, for a directory). */
  async *entry(dirfd: number, name: string, tarPath: string): AsyncGenerator<Buffer> {
    const path = proc(dirfd, name);
    const st = await lstat(path, { bigint: true }).catch(() => undefined);
    if (!st) return; // removed while we walked
    const { overlay, owner } = this.opts;
    const base: EntryInit = {
      path: tarPath,
      type: 'file',
      mode: Number(st.mode & 0o7777n),
      uid: owner?.uid ?? Number(st.uid),
      gid: owner?.gid ?? Number(st.gid),
      mtime: ts(st.mtimeNs),
      xattrs: st.isSymbolicLink() ? new Map() : xattrsOf(path),
    };
    const slash = tarPath.lastIndexOf('/');
    const dirOf = slash < 0 ? '' : tarPath.slice(0, slash + 1);
    if (overlay && st.isCharacterDevice() && st.rdev === 0n) {
      yield header({ path: `${dirOf}.wh.${tarPath.slice(slash + 1)}`, type: 'file', mtime: base.mtime });
    } else if (st.isDirectory()) {
      const fd = openIn(dirfd, name, O.RDONLY | O.DIRECTORY);
      if (fd === undefined) return;
      try {
        yield header({ ...base, path: `${tarPath}/`, type: 'dir' });
        if (overlay && lgetxattr(proc(fd, '.'), 'trusted.overlay.opaque')?.toString() === 'y')
          yield header({ path: `${tarPath}/.wh..wh..opq`, type: 'file', mtime: base.mtime });
        yield* this.children(fd, `${tarPath}/`);
      } finally {
        closeFd(fd);
      }
    } else if (st.isSymbolicLink()) {
      const target = await readlink(path).catch(() => undefined);
      if (target !== undefined) yield header({ ...base, type: 'symlink', linkname: target });
    } else if (st.isCharacterDevice() || st.isBlockDevice()) {
      // glibc's major()/minor() of a 64-bit dev_t.
      const d = st.rdev;
      yield header({
        ...base,
        type: st.isCharacterDevice() ? 'chardev' : 'blockdev',
        devmajor: Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn)),
        devminor: Number((d & 0xffn) | ((d >> 12n) & ~0xffn)),
      });
    } else if (st.isFIFO()) {
      yield header({ ...base, type: 'fifo' });
    } else if (st.isFile()) {
      const key = `${st.dev}:${st.ino}`;
      const first = st.nlink > 1n ? this.#links.get(key) : undefined;
      if (first !== undefined) {
        yield header({ ...base, type: 'link', linkname: first });
        return;
      }
      // O_NONBLOCK: a file swapped for a FIFO must not hang the walk.
      const fd = openIn(dirfd, name, O.RDONLY | O_NONBLOCK);
      if (fd === undefined) return;
      try {
        const real = fstatSync(fd);
        if (!real.isFile() || real.ino !== Number(st.ino)) return; // replaced between lstat and open
        if (st.nlink > 1n) this.#links.set(key, tarPath);
        const size = real.size;
        yield header({ ...base, size });
        let sent = 0;
        while (sent < size) {
          const buf = Buffer.allocUnsafe(Math.min(CHUNK, size - sent));
          const n = readSync(fd, buf, 0, buf.length, sent);
          if (n === 0) break; // shrank while we read: the header promised `size` bytes, zeros follow
          sent += n;
          yield n === buf.length ? buf : buf.subarray(0, n);
        }
        if (sent < size) yield Buffer.alloc(size - sent);
        yield padding(size);
      } finally {
        closeFd(fd);
      }
    }
    // Sockets are not carried.
  }

  /** Every entry of the directory `dirfd`, in name order, under `prefix` ('' or ending in '/'). */
  async *children(dirfd: number, prefix: string): AsyncGenerator<Buffer> {
    const names = (await readdir(proc(dirfd))).sort();
    for (const name of names) yield* this.entry(dirfd, name, `${prefix}${name}`);
  }
}

/** The tar of everything in the directory `dirfd` (not the directory itself), as a layer carries it. */
export async function* directoryTar(dirfd: number, opts: TreeOptions = {}): AsyncGenerator<Buffer> {
  yield* new TreeWriter(opts).children(dirfd, '');
  yield trailer();
}

/**
 * The tar of `name` in the directory `dirfd` under the name `as`: a file, a
 * symlink (not followed) or a directory with its tree. `as` '' writes a
 * directory's contents only (docker's `SRC/.`).
 */
export async function* pathTar(
  dirfd: number,
  name: string,
  as: string,
  opts: TreeOptions = {},
): AsyncGenerator<Buffer> {
  const w = new TreeWriter(opts);
  if (as) yield* w.entry(dirfd, name, as);
  else {
    const fd = openIn(dirfd, name, O.RDONLY | O.DIRECTORY);
    if (fd === undefined) throw new Error(`${name} is not a directory`);
    try {
      yield* w.children(fd, '');
    } finally {
      closeFd(fd);
    }
  }
  yield trailer();
}
