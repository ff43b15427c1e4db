/**
 * Writes a layer's tar entries into a snapshot's own directory (the overlay
 * upper), the way containerd's overlay applier does, with the parents' layers
 * below it as read-only lowers.
 *
 * Safety: nothing here joins path strings onto the host's tree. Every entry is
 * reached from the snapshot's directory fd one component at a time
 * (openat2 RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS, then the *at calls on that
 * parent fd), and the last component is never followed. A name with `..` or a
 * leading `/`, a parent path through an absolute symlink, through a relative
 * one that climbs out of the layer, or through more than 40 symlinks, a hard
 * link to such a place, and overlay's own trusted.overlay.* xattrs are refused:
 * the entry fails and with it the layer.
 *
 * Parents an entry needs but the layer does not carry are looked up in the
 * merged view of the lowers (whiteouts and opaque directories respected): a
 * directory there is copied up (owner, mode, times, xattrs), a relative
 * symlink is followed, and a path no layer has is made 0755 root-owned as
 * docker does.
 *
 * A layer may also be applied before its parents are on disk (`pending`: a
 * pull unpacks its layers side by side). Whiteouts and opaque directories are
 * then made as for a layer with lowers, and a parent the layer lacks is made
 * 0755 root-owned and listed in `deferred`; once the parents are there,
 * settleDeferred() gives each what the lowers have, or answers that the layer
 * must be applied again over them (a lower has a symlink or a file there).
 *
 * Whiteouts: `.wh.NAME` becomes overlay's whiteout (a 0:0 character device)
 * and `.wh..wh..opq` the opaque xattr on its directory; both only hide lower
 * layers (OCI image spec), so with no lowers they are nothing, and a whiteout
 * never removes what this same layer wrote.
 */
import { fchmodSync, fchownSync, lstatSync, readlinkSync, rmSync, type Stats, writeSync } from 'node:fs';
import {
  AT,
  closeFd,
  fchmodat,
  fchownat,
  fsetxattr,
  lgetxattr,
  linkat,
  llistxattr,
  lsetxattr,
  makedev,
  mkdirat,
  mknodat,
  O,
  openat2,
  RESOLVE,
  S,
  type SysError,
  symlinkat,
  syncfs,
  unlinkat,
  utimensat,
} from '@ctr/sys';
import type { TarEntry, TarHandler, Timespec } from '@ctr/tar';

/** A layer entry that cannot be applied: the whole layer fails. */
export class LayerError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LayerError';
  }
}

const WH = '.wh.';
const OPAQUE = '.wh..wh..opq';
const OPAQUE_XATTR = 'trusted.overlay.opaque';
const MAX_SYMLINKS = 40;
const STRICT = RESOLVE.BENEATH | RESOLVE.NO_SYMLINKS | RESOLVE.NO_MAGICLINKS;
/** Directory fds kept between entries; beyond this the oldest are closed. */
const DIR_CACHE = 1024;

interface Dir {
  fd: number;
  /** Its path in the layer with symlinks resolved ("" is the root). */
  real: string;
}

const proc = (fd: number, name = '') => `/proc/self/fd/${fd}${name ? `/${name}` : ''}`;
const lstatAt = (fd: number, name: string): Stats | undefined => lstatSync(proc(fd, name), { throwIfNoEntry: false });
const isWhiteout = (st: Stats) => st.isCharacterDevice() && st.rdev === 0;
const joinPath = (dir: string, name: string) => (dir ? `${dir}/${name}` : name);

/** A tar name as components: refuses absolute names and `..`, drops `.` and empty ones. */
export function cleanPath(name: string): string[] {
  if (name.startsWith('/')) throw new LayerError(`absolute path ${JSON.stringify(name)} is refused`);
  const parts = name.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new LayerError(`path ${JSON.stringify(name)} climbs out with ".."`);
  if (parts.some((p) => p.includes('\0'))) throw new LayerError(`path ${JSON.stringify(name)} holds a NUL`);
  return parts;
}

export class Extractor implements TarHandler {
  /** Entries read (applied or skipped). */
  entries = 0;
  readonly #root: Dir;
  readonly #lowers: string[];
  /** It has lowers: those in #lowers, or pending ones not yet on disk. */
  readonly #hasLowers: boolean;
  readonly #pending: boolean;
  /** With pending lowers: the parents the layer lacks, made here as placeholders (their real paths). */
  readonly #deferred = new Set<string>();
  #dirs = new Map<string, Dir>();
  #file = -1;
  #entry?: TarEntry;
  #dirTimes: Array<{ real: string; atime: Timespec; mtime: Timespec }> = [];
  #closed = false;

  readonly #what: string;

  /**
   * `root`: the snapshot's own directory; `lowers`: its parents' directories,
   * nearest first; `what` names an entry in errors ("layer entry");
   * `pending`: the layer has lowers, not yet on disk (see `deferred`).
   */
  constructor(root: string, lowers: string[], what = 'layer entry', pending = false) {
    this.#what = what;
    this.#root = { fd: openat2(AT.FDCWD, root, O.RDONLY | O.DIRECTORY, 0, 0), real: '' };
    this.#lowers = lowers;
    this.#pending = pending && lowers.length === 0;
    this.#hasLowers = lowers.length > 0 || this.#pending;
  }

  /** The placeholders made for parents the layer lacks while its lowers were pending, shallowest first. */
  get deferred(): string[] {
    return [...this.#deferred].sort((a, b) => a.split('/').length - b.split('/').length);
  }

  entry(e: TarEntry): void {
    this.entries++;
    try {
      this.#apply(e);
    } catch (err) {
      throw this.#wrap(e.path, err);
    }
  }

  data(chunk: Buffer): void {
    if (this.#file < 0) return;
    try {
      for (let off = 0; off < chunk.length; ) off += writeSync(this.#file, chunk, off, chunk.length - off);
    } catch (err) {
      throw this.#wrap(this.#entry?.path ?? '', err);
    }
  }

  end(): void {
    if (this.#file < 0 || !this.#entry) return;
    const e = this.#entry;
    const fd = this.#file;
    this.#file = -1;
    try {
      fchownSync(fd, e.uid, e.gid);
      fchmodSync(fd, e.mode);
      for (const [k, v] of e.xattrs) fsetxattr(fd, k, v);
      utimensat(fd, '', e.atime ?? e.mtime, e.mtime, AT.EMPTY_PATH);
    } catch (err) {
      throw this.#wrap(e.path, err);
    } finally {
      closeFd(fd);
    }
  }

  /**
   * After the last entry: directory times (children changed them), the file
   * system flushed (a snapshot is only committed once its files are on disk: a
   * power cut must not leave a committed layer with empty files), every fd
   * closed. `sync` false leaves the flush to the caller (a layer applied beside
   * its parents flushes once they are committed, and does not stall the disk
   * under the layers still being written).
   */
  finish(sync = true): void {
    for (const d of this.#dirTimes.reverse()) {
      let fd = -1;
      try {
        fd = d.real ? openat2(this.#root.fd, d.real, O.RDONLY | O.DIRECTORY | O.NOFOLLOW, 0, STRICT) : -1;
        utimensat(fd < 0 ? this.#root.fd : fd, '', d.atime, d.mtime, AT.EMPTY_PATH);
      } catch {
        // replaced by a later entry: its own times stand
      } finally {
        if (fd >= 0) closeFd(fd);
      }
    }
    if (sync) syncfs(this.#root.fd);
    this.close();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#file >= 0) closeFd(this.#file);
    this.#file = -1;
    this.#forget();
    closeFd(this.#root.fd);
  }

  #wrap(path: string, err: unknown): Error {
    const msg = err instanceof Error ? err.message : String(err);
    return new LayerError(`${this.#what} ${JSON.stringify(path)}: ${msg}`);
  }

  #apply(e: TarEntry): void {
    if (this.#dirs.size > DIR_CACHE) this.#forget();
    for (const k of e.xattrs.keys())
      if (k.startsWith('trusted.overlay.'))
        throw new LayerError(`xattr ${k} is refused: it would forge overlay metadata`);
    const parts = cleanPath(e.path);
    if (parts.some((p) => p.startsWith('.wh..wh.') && p !== OPAQUE)) return; // aufs bookkeeping (.wh..wh.plnk), as docker skips it
    if (parts.length === 0) {
      this.#applyRoot(e);
      return;
    }
    const name = parts[parts.length - 1];
    const parent = this.#resolveDir(parts.slice(0, -1), 0);
    if (name === OPAQUE) this.#opaque(parent);
    else if (name.startsWith(WH)) this.#whiteout(parent, name.slice(WH.length));
    else if (e.type === 'file') this.#regular(parent, name, e);
    else if (e.type === 'dir') this.#directory(parent, name, e);
    else if (e.type === 'link') this.#hardlink(parent, name, e);
    else if (e.type === 'symlink') {
      this.#create(parent, name, () => symlinkat(e.linkname, parent.fd, name));
      this.#meta(parent, name, e, false);
    } else {
      const fmt = e.type === 'chardev' ? S.IFCHR : e.type === 'blockdev' ? S.IFBLK : S.IFIFO;
      this.#create(parent, name, () => mknodat(parent.fd, name, fmt | 0o600, makedev(e.devmajor, e.devminor)));
      this.#meta(parent, name, e, true);
    }
  }

  #applyRoot(e: TarEntry): void {
    if (e.type !== 'dir') throw new LayerError('the layer root must be a directory');
    fchownSync(this.#root.fd, e.uid, e.gid);
    fchmodSync(this.#root.fd, e.mode);
    for (const [k, v] of e.xattrs) fsetxattr(this.#root.fd, k, v);
    this.#dirTimes.push({ real: '', atime: e.atime ?? e.mtime, mtime: e.mtime });
  }

  #regular(parent: Dir, name: string, e: TarEntry): void {
    const open = () => openat2(parent.fd, name, O.WRONLY | O.CREAT | O.EXCL | O.NOFOLLOW, 0o600, STRICT);
    let fd: number;
    try {
      fd = open();
    } catch (err) {
      if ((err as SysError).code !== 'EEXIST') throw err;
      this.#remove(parent, name);
      fd = open();
    }
    this.#file = fd;
    this.#entry = e;
  }

  #directory(parent: Dir, name: string, e: TarEntry): void {
    try {
      mkdirat(parent.fd, name, 0o700);
    } catch (err) {
      if ((err as SysError).code !== 'EEXIST') throw err;
      const st = lstatAt(parent.fd, name);
      if (!st?.isDirectory()) {
        const hidesLower = st !== undefined && isWhiteout(st);
        this.#remove(parent, name);
        mkdirat(parent.fd, name, 0o700);
        if (hidesLower) this.#setOpaque(parent.fd, name);
      }
    }
    fchownat(parent.fd, name, e.uid, e.gid, AT.SYMLINK_NOFOLLOW);
    fchmodat(parent.fd, name, e.mode);
    if (e.xattrs.size) {
      const fd = openat2(parent.fd, name, O.RDONLY | O.DIRECTORY | O.NOFOLLOW, 0, STRICT);
      try {
        for (const [k, v] of e.xattrs) fsetxattr(fd, k, v);
      } finally {
        closeFd(fd);
      }
    }
    const real = joinPath(parent.real, name);
    this.#deferred.delete(real); // the layer's own entry for it: its metadata stands
    this.#dirTimes.push({ real, atime: e.atime ?? e.mtime, mtime: e.mtime });
  }

  #hardlink(parent: Dir, name: string, e: TarEntry): void {
    const target = cleanPath(e.linkname);
    if (target.length === 0) throw new LayerError('a hard link to the layer root is refused');
    const tname = target[target.length - 1];
    const tdir = this.#resolveDir(target.slice(0, -1), 0);
    const st = lstatAt(tdir.fd, tname);
    if (!st || isWhiteout(st))
      throw new LayerError(`hard link target ${JSON.stringify(e.linkname)} is not in this layer`);
    if (st.isDirectory()) throw new LayerError(`hard link target ${JSON.stringify(e.linkname)} is a directory`);
    if (tdir.fd === parent.fd && tname === name) return;
    this.#create(parent, name, () => linkat(tdir.fd, tname, parent.fd, name, 0));
  }

  /** Owner, mode, xattrs and times of a node made by name (symlinks: no mode; they have none). */
  #meta(parent: Dir, name: string, e: TarEntry, chmod: boolean): void {
    fchownat(parent.fd, name, e.uid, e.gid, AT.SYMLINK_NOFOLLOW);
    if (chmod) fchmodat(parent.fd, name, e.mode);
    for (const [k, v] of e.xattrs) lsetxattr(proc(parent.fd, name), k, v);
    utimensat(parent.fd, name, e.atime ?? e.mtime, e.mtime, AT.SYMLINK_NOFOLLOW);
  }

  /** Runs make(); if the name is taken, removes what is there (a directory with its tree) and runs it again. */
  #create(parent: Dir, name: string, make: () => void): void {
    try {
      make();
    } catch (err) {
      if ((err as SysError).code !== 'EEXIST') throw err;
      this.#remove(parent, name);
      make();
    }
  }

  #remove(parent: Dir, name: string): void {
    const st = lstatAt(parent.fd, name);
    if (!st) return;
    if (st.isDirectory()) {
      // Nothing else writes here, and rm does not follow symlinks inside the tree.
      rmSync(proc(parent.fd, name), { recursive: true, force: true });
      this.#forget();
    } else {
      unlinkat(parent.fd, name, 0);
      if (st.isSymbolicLink()) this.#forget();
    }
  }

  #whiteout(parent: Dir, name: string): void {
    if (!name || name === '.' || name === '..') throw new LayerError('a whiteout without a name');
    if (!this.#hasLowers) return;
    if (lstatAt(parent.fd, name)) return; // written by this layer: a whiteout only hides lower layers
    mknodat(parent.fd, name, S.IFCHR, 0n);
  }

  #opaque(dir: Dir): void {
    if (!this.#hasLowers) return;
    const fd = openat2(dir.fd, '.', O.RDONLY | O.DIRECTORY, 0, STRICT);
    try {
      fsetxattr(fd, OPAQUE_XATTR, Buffer.from('y'));
    } finally {
      closeFd(fd);
    }
  }

  #setOpaque(parentFd: number, name: string): void {
    if (this.#hasLowers) lsetxattr(proc(parentFd, name), OPAQUE_XATTR, Buffer.from('y'));
  }

  #forget(): void {
    for (const d of this.#dirs.values()) closeFd(d.fd);
    this.#dirs.clear();
  }

  /** The directory at `parts` (as the tar names it), made if needed; `hops` counts symlinks followed. */
  #resolveDir(parts: string[], hops: number): Dir {
    if (parts.length === 0) return this.#root;
    const key = parts.join('/');
    const cached = this.#dirs.get(key);
    if (cached) return cached;
    const parent = this.#resolveDir(parts.slice(0, -1), hops);
    const name = parts[parts.length - 1];
    const dir = this.#step(parent, name, key, hops);
    this.#dirs.set(key, dir);
    return dir;
  }

  #step(parent: Dir, name: string, key: string, hops: number): Dir {
    const real = joinPath(parent.real, name);
    try {
      return { fd: openat2(parent.fd, name, O.PATH | O.DIRECTORY | O.NOFOLLOW, 0, STRICT), real };
    } catch (err) {
      const code = (err as SysError).code;
      if (code === 'ENOENT') return this.#fromLowers(parent, name, key, hops);
      if (code !== 'ELOOP' && code !== 'ENOTDIR') throw err;
    }
    const st = lstatAt(parent.fd, name);
    if (st?.isSymbolicLink()) return this.#follow(parent, readlinkSync(proc(parent.fd, name)), key, hops);
    if (st && isWhiteout(st)) {
      // A path this layer's lowers had and a lower layer deleted: a new directory that hides them.
      unlinkat(parent.fd, name, 0);
      mkdirat(parent.fd, name, 0o755);
      this.#setOpaque(parent.fd, name);
      return { fd: openat2(parent.fd, name, O.PATH | O.DIRECTORY | O.NOFOLLOW, 0, STRICT), real };
    }
    throw new LayerError(`parent ${JSON.stringify(key)} is not a directory`);
  }

  /** A symlink met in a parent path: followed only while it stays inside the layer. */
  #follow(parent: Dir, target: string, key: string, hops: number): Dir {
    if (hops >= MAX_SYMLINKS) throw new LayerError(`too many symlinks in the parent path ${JSON.stringify(key)}`);
    if (target.startsWith('/'))
      throw new LayerError(
        `parent ${JSON.stringify(key)} is a symlink to the absolute path ${JSON.stringify(target)}, which is refused`,
      );
    const out = parent.real ? parent.real.split('/') : [];
    for (const p of target.split('/')) {
      if (p === '' || p === '.') continue;
      if (p === '..') {
        if (out.length === 0)
          throw new LayerError(
            `parent ${JSON.stringify(key)} is a symlink to ${JSON.stringify(target)}, which leads out of the layer`,
          );
        out.pop();
      } else out.push(p);
    }
    const d = this.#resolveDir(out, hops + 1);
    return { fd: openat2(d.fd, '.', O.PATH | O.DIRECTORY, 0, STRICT), real: d.real };
  }

  /** A parent the upper lacks: as the merged view of the lowers has it. */
  #fromLowers(parent: Dir, name: string, key: string, hops: number): Dir {
    const real = joinPath(parent.real, name);
    if (this.#pending) {
      mkdirat(parent.fd, name, 0o755);
      this.#deferred.add(real);
      return { fd: openat2(parent.fd, name, O.PATH | O.DIRECTORY | O.NOFOLLOW, 0, STRICT), real };
    }
    const found = lookupLowers([proc(this.#root.fd), ...this.#lowers], real);
    if (found?.st.isSymbolicLink()) return this.#follow(parent, readlinkSync(found.path), key, hops);
    if (found && !found.st.isDirectory()) throw new LayerError(`parent ${JSON.stringify(key)} is not a directory`);
    mkdirat(parent.fd, name, 0o755);
    if (found) copyDirMeta(found, parent.fd, name);
    return { fd: openat2(parent.fd, name, O.PATH | O.DIRECTORY | O.NOFOLLOW, 0, STRICT), real };
  }
}

/** A lower directory's owner, mode, xattrs (not overlay's own) and times onto `name` in `dirFd`. */
function copyDirMeta(from: { path: string; st: Stats }, dirFd: number, name: string): void {
  const { st, path } = from;
  fchownat(dirFd, name, st.uid, st.gid, AT.SYMLINK_NOFOLLOW);
  fchmodat(dirFd, name, st.mode & 0o7777);
  for (const x of llistxattr(path)) {
    const v = lgetxattr(path, x);
    if (v && !x.startsWith('trusted.overlay.')) lsetxattr(proc(dirFd, name), x, v);
  }
  const t = (ns: bigint) => ({ sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) });
  const big = lstatSync(path, { bigint: true });
  utimensat(dirFd, name, t(big.atimeNs), t(big.mtimeNs), AT.SYMLINK_NOFOLLOW);
}

/**
 * overlayfs's lookup over the layers, top first: a whiteout or a non-directory
 * on the way hides everything below it, an opaque directory hides the layers
 * below it. The lower layers are ours and read-only, so their paths are read
 * as strings, each component checked to be a real directory. With `skipTop`
 * the top layer is passed over at the last component (it holds a placeholder there).
 */
function lookupLowers(all: string[], real: string, skipTop = false): { path: string; st: Stats } | undefined {
  const parts = real.split('/');
  let layers = all;
  for (let i = 0; i < parts.length; i++) {
    const last = i === parts.length - 1;
    const prefix = parts.slice(0, i + 1).join('/');
    const next: string[] = [];
    for (const layer of layers) {
      if (last && skipTop && layer === all[0]) continue;
      const path = `${layer}/${prefix}`;
      const st = lstatSync(path, { throwIfNoEntry: false });
      if (!st) continue;
      if (isWhiteout(st)) break;
      if (last) return { path, st };
      if (!st.isDirectory()) break;
      next.push(layer);
      if (lgetxattr(path, OPAQUE_XATTR)?.toString() === 'y') break;
    }
    layers = next;
    if (!layers.length) return undefined;
  }
  return undefined;
}

/**
 * A layer applied while its lowers were pending, once they are on disk: each
 * placeholder the layer made for a parent it lacked (`deferred`, shallowest
 * first) takes what the merged lowers have there, as an apply over them would
 * have. Answers false when the apply over them would have gone another way (a
 * lower has a symlink or a non-directory there), and the layer must be applied
 * again; true once the layer is as if applied over them. Nothing is flushed:
 * the caller syncs the file system before it commits the layer.
 */
export function settleDeferred(root: string, lowers: string[], deferred: string[]): boolean {
  if (deferred.length === 0) return true;
  const rootFd = openat2(AT.FDCWD, root, O.RDONLY | O.DIRECTORY, 0, 0);
  try {
    const layers = [proc(rootFd), ...lowers];
    for (const real of deferred) {
      const parts = real.split('/');
      const name = parts[parts.length - 1];
      let dirFd = -1;
      try {
        dirFd = parts.length > 1 ? openat2(rootFd, parts.slice(0, -1).join('/'), O.PATH | O.DIRECTORY, 0, STRICT) : -1;
      } catch {
        continue; // replaced by a later entry of the layer: what the layer wrote stands
      }
      try {
        const at = dirFd < 0 ? rootFd : dirFd;
        if (!lstatAt(at, name)?.isDirectory()) continue;
        const found = lookupLowers(layers, real, true);
        if (!found) continue; // no layer has it: 0755 root-owned, as made
        if (!found.st.isDirectory()) return false;
        copyDirMeta(found, at, name);
      } finally {
        if (dirFd >= 0) closeFd(dirFd);
      }
    }
    return true;
  } finally {
    closeFd(rootFd);
  }
}
