/**
 * `cp` in and out of a container's file system, safe against what the
 * container put there: every path is resolved from the container's root fd
 * with openat2 RESOLVE_IN_ROOT (a symlink to `/etc/shadow` inside the
 * container means the container's own), trees are read through directory
 * fds (@ctr/tar/tree) and written by the layer extractor (@ctr/tar/extract),
 * which refuses names and symlinks that lead out of the destination. A
 * directory swapped for a symlink while we work (docker's CVE-2018-15664) is
 * skipped or refused, never followed.
 *
 * The root is `/proc/<pid>/root` of a running container (its volumes and
 * tmpfs included, as the process sees them), or a private mount of the
 * snapshot with its volumes and binds for one that is not running.
 */
import { lstatSync, readlinkSync } from 'node:fs';
import { mkdir, readdir, rmdir } from 'node:fs/promises';
import { join, posix } from 'node:path';
import type { PathStat } from '@ctr/api/containers/v1/containers';
import { invalidArgument, notFound } from '@ctr/common/errors';
import {
  closeFd,
  MNT,
  MS,
  mount,
  mountRootfs,
  O,
  openat2,
  RESOLVE,
  type SnapshotMount,
  type SysError,
  umount,
} from '@ctr/sys';
import { decompress, TarReader } from '@ctr/tar';
import { Extractor, LayerError } from '@ctr/tar/extract';
import { pathTar } from '@ctr/tar/tree';

const proc = (fd: number, name = '') => `/proc/self/fd/${fd}${name && name !== '.' ? `/${name}` : ''}`;
const MAX_SYMLINKS = 40;

export interface InRoot {
  /** The directory that holds the entry (an O_PATH fd; close it). */
  dirfd: number;
  /** The entry's name in it ("." for the root itself). */
  name: string;
  /** The path it resolved to, in the container. */
  path: string;
}

function missing(path: string, container: string) {
  return notFound(`Could not find the file ${path} in container ${container}`);
}

/**
 * `path` in the container whose root is `rootFd`: its parents resolved
 * inside the root, the entry itself followed only with `follow` (and then
 * again inside the root).
 */
export function resolveInRoot(rootFd: number, path: string, follow: boolean, container: string): InRoot {
  let p = posix.normalize(`/${path}`);
  for (let hops = 0; ; hops++) {
    const parent = posix.dirname(p);
    const name = posix.basename(p) || '.';
    let dirfd: number;
    try {
      dirfd = openat2(
        rootFd,
        parent === '/' ? '.' : parent.slice(1),
        O.PATH | O.DIRECTORY,
        0,
        RESOLVE.IN_ROOT | RESOLVE.NO_MAGICLINKS,
      );
    } catch (err) {
      const code = (err as SysError).code;
      if (code === 'ENOENT' || code === 'ENOTDIR') throw missing(path, container);
      throw err;
    }
    if (!follow || name === '.') return { dirfd, name, path: p };
    const st = lstatSync(proc(dirfd, name), { throwIfNoEntry: false });
    if (!st?.isSymbolicLink()) return { dirfd, name, path: p };
    const target = readlinkSync(proc(dirfd, name));
    closeFd(dirfd);
    if (hops >= MAX_SYMLINKS) throw invalidArgument(`too many levels of symbolic links in ${path}`);
    p = posix.normalize(target.startsWith('/') ? target : posix.join(parent, target));
  }
}

export function statPath(rootFd: number, path: string, follow: boolean, container: string): PathStat {
  const r = resolveInRoot(rootFd, path, follow, container);
  try {
    const st = lstatSync(proc(r.dirfd, r.name), { throwIfNoEntry: false });
    if (!st) throw missing(path, container);
    if (path.endsWith('/') && !st.isDirectory()) throw invalidArgument(`${path} is not a directory`);
    return {
      name: r.name === '.' ? '/' : r.name,
      size: BigInt(st.size),
      mode: st.mode,
      mtime: st.mtime,
      linkTarget: st.isSymbolicLink() ? readlinkSync(proc(r.dirfd, r.name)) : '',
    };
  } finally {
    closeFd(r.dirfd);
  }
}

/** A tar of `path` named `as` (its base name when empty; "." for a directory's contents). */
export async function* copyOut(
  rootFd: number,
  path: string,
  as: string,
  follow: boolean,
  container: string,
): AsyncGenerator<Buffer> {
  const r = resolveInRoot(rootFd, path, follow, container);
  try {
    if (!lstatSync(proc(r.dirfd, r.name), { throwIfNoEntry: false })) throw missing(path, container);
    const name = as === '.' || (!as && r.name === '.') ? '' : as || r.name;
    yield* pathTar(r.dirfd, r.name, name);
  } finally {
    closeFd(r.dirfd);
  }
}

/** Extracts a tar (plain, gzip or zstd) into the directory `path` of the container. */
export async function copyIn(
  rootFd: number,
  path: string,
  chunks: AsyncIterable<Buffer>,
  container: string,
): Promise<void> {
  const r = resolveInRoot(rootFd, path, true, container);
  let fd: number;
  try {
    fd = openat2(r.dirfd, r.name, O.RDONLY | O.DIRECTORY | O.NOFOLLOW, 0, RESOLVE.BENEATH | RESOLVE.NO_SYMLINKS);
  } catch (err) {
    const code = (err as SysError).code;
    if (code === 'ENOENT') throw missing(path, container);
    if (code === 'ENOTDIR' || code === 'ELOOP') throw invalidArgument(`extraction point ${path} is not a directory`);
    throw err;
  } finally {
    closeFd(r.dirfd);
  }
  let ex: Extractor;
  try {
    ex = new Extractor(proc(fd), [], 'archive entry');
  } finally {
    closeFd(fd);
  }
  const reader = new TarReader(ex);
  try {
    for await (const chunk of decompress(chunks)) reader.write(chunk);
    reader.end();
    ex.finish();
  } catch (err) {
    ex.close();
    if (err instanceof LayerError) throw invalidArgument(err.message);
    if ((err as SysError).code === 'EROFS') throw invalidArgument(`${path} is on a read-only file system`);
    throw err;
  }
}

export interface OffMount {
  type: string;
  source: string;
  target: string;
  readOnly: boolean;
}

/**
 * A not-running container's file system mounted privately at `dir`: its
 * snapshot, then its volumes and binds at their targets (resolved inside the
 * rootfs; a target the rootfs lacks is left out). Returns an fd of the root.
 */
export function mountOffline(dir: string, rootfs: SnapshotMount[], mounts: OffMount[]): number {
  for (const m of rootfs) mountRootfs(m, dir);
  const rootFd = openat2(-100, dir, O.PATH | O.DIRECTORY, 0, 0);
  try {
    const ordered = [...mounts].sort((a, b) => a.target.split('/').length - b.target.split('/').length);
    for (const m of ordered) {
      if (!m.source) continue;
      let target: number;
      try {
        target = openat2(
          rootFd,
          m.target.replace(/^\/+/, '') || '.',
          O.PATH,
          0,
          RESOLVE.IN_ROOT | RESOLVE.NO_MAGICLINKS,
        );
      } catch {
        continue;
      }
      try {
        // Mounting on the fd's magic link: the target the resolution found, never a path string again.
        mount(m.source, proc(target), null, MS.BIND | MS.REC);
        if (m.readOnly) mount('', proc(target), null, MS.BIND | MS.REMOUNT | MS.RDONLY);
      } finally {
        closeFd(target);
      }
    }
    return rootFd;
  } catch (err) {
    closeFd(rootFd);
    umount(dir, MNT.DETACH);
    throw err;
  }
}

/** Ends what mountOffline made (the whole tree at once). */
export function unmountOffline(dir: string, rootFd: number): void {
  closeFd(rootFd);
  umount(dir, MNT.DETACH);
}

/** Mount points a crash left under `dir` are detached and removed. */
export async function cleanCopyMounts(dir: string): Promise<void> {
  for (const name of await readdir(dir).catch(() => [] as string[])) {
    try {
      umount(join(dir, name), MNT.DETACH);
    } catch {
      // not mounted
    }
    // rmdir, not rm -r: a mount that did not go must not have its files removed.
    await rmdir(join(dir, name)).catch(() => undefined);
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
}
