/**
 * File-descriptor-relative file system calls (the *at family, openat2, xattrs)
 * for work that must not follow a path string out of a directory: layer
 * extraction resolves every path from the snapshot's own directory fd.
 * Each call throws a SysError whose `code` is errno's name.
 */
import koffi from 'koffi';
import { libc, SysError } from './libc.js';

const c = {
  // glibc's syscall() is assembly that only moves registers: a fixed prototype is safe and faster than variadic.
  openat2: libc.func('long syscall(long nr, int dirfd, const char *path, void *how, size_t size)'),
  mkdirat: libc.func('int mkdirat(int dirfd, const char *path, uint32_t mode)'),
  symlinkat: libc.func('int symlinkat(const char *target, int dirfd, const char *path)'),
  linkat: libc.func('int linkat(int olddirfd, const char *oldpath, int newdirfd, const char *newpath, int flags)'),
  mknodat: libc.func('int mknodat(int dirfd, const char *path, uint32_t mode, uint64_t dev)'),
  fchownat: libc.func('int fchownat(int dirfd, const char *path, uint32_t uid, uint32_t gid, int flags)'),
  fchmodat: libc.func('int fchmodat(int dirfd, const char *path, uint32_t mode, int flags)'),
  utimensat: libc.func('int utimensat(int dirfd, const char *path, void *times, int flags)'),
  unlinkat: libc.func('int unlinkat(int dirfd, const char *path, int flags)'),
  fsetxattr: libc.func('int fsetxattr(int fd, const char *name, void *value, size_t size, int flags)'),
  lsetxattr: libc.func('int lsetxattr(const char *path, const char *name, void *value, size_t size, int flags)'),
  lgetxattr: libc.func('long lgetxattr(const char *path, const char *name, _Out_ void *value, size_t size)'),
  llistxattr: libc.func('long llistxattr(const char *path, _Out_ void *list, size_t size)'),
  close: libc.func('int close(int fd)'),
  syncfs: libc.func('int syncfs(int fd)'),
  ioctlFlags: libc.func('int ioctl(int fd, unsigned long request, _Inout_ int *flags)'),
};

function fail(syscall: string, detail: string): never {
  throw new SysError(syscall, koffi.errno(), detail);
}

export const AT = { FDCWD: -100, SYMLINK_NOFOLLOW: 0x100, REMOVEDIR: 0x200, SYMLINK_FOLLOW: 0x400, EMPTY_PATH: 0x1000 };

export const O = {
  RDONLY: 0,
  WRONLY: 1,
  RDWR: 2,
  CREAT: 0o100,
  EXCL: 0o200,
  TRUNC: 0o1000,
  DIRECTORY: 0o200000,
  NOFOLLOW: 0o400000,
  CLOEXEC: 0o2000000,
  PATH: 0o10000000,
};

/** openat2(2) resolve flags. */
export const RESOLVE = { NO_XDEV: 0x1, NO_MAGICLINKS: 0x2, NO_SYMLINKS: 0x4, BENEATH: 0x8, IN_ROOT: 0x10 };

export const S = { IFMT: 0o170000, IFCHR: 0o20000, IFBLK: 0o60000, IFIFO: 0o10000, IFDIR: 0o40000 };

const SYS_openat2 = 437;
const how = new BigUint64Array(3);

/** openat2(2): `path` resolved from `dirfd` under `resolve`'s rules. */
export function openat2(dirfd: number, path: string, flags: number, mode: number, resolve: number): number {
  how[0] = BigInt(flags | O.CLOEXEC);
  how[1] = BigInt(mode);
  how[2] = BigInt(resolve);
  const fd = Number(c.openat2(SYS_openat2, dirfd, path, how, 24));
  if (fd < 0) fail('openat2', path);
  return fd;
}

export function mkdirat(dirfd: number, path: string, mode: number): void {
  if (c.mkdirat(dirfd, path, mode) < 0) fail('mkdirat', path);
}

export function symlinkat(target: string, dirfd: number, path: string): void {
  if (c.symlinkat(target, dirfd, path) < 0) fail('symlinkat', path);
}

export function linkat(olddirfd: number, oldpath: string, newdirfd: number, newpath: string, flags = 0): void {
  if (c.linkat(olddirfd, oldpath, newdirfd, newpath, flags) < 0) fail('linkat', `${newpath} to ${oldpath}`);
}

/** glibc's makedev: 12 bits of major and 20 of minor, split the way the kernel's new encoding wants. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return ((ma & 0xfffn) << 8n) | ((ma & ~0xfffn) << 32n) | (mi & 0xffn) | ((mi & ~0xffn) << 12n);
}

export function mknodat(dirfd: number, path: string, mode: number, dev: bigint): void {
  if (c.mknodat(dirfd, path, mode, dev) < 0) fail('mknodat', path);
}

export function fchownat(dirfd: number, path: string, uid: number, gid: number, flags: number): void {
  if (c.fchownat(dirfd, path, uid, gid, flags) < 0) fail('fchownat', path);
}

export function fchmodat(dirfd: number, path: string, mode: number): void {
  if (c.fchmodat(dirfd, path, mode, 0) < 0) fail('fchmodat', path);
}

const times = new BigInt64Array(4);

/** Sets atime and mtime to the nanosecond; `path` "" with AT.EMPTY_PATH means dirfd itself. */
export function utimensat(
  dirfd: number,
  path: string,
  atime: { sec: number; nsec: number },
  mtime: { sec: number; nsec: number },
  flags: number,
): void {
  times[0] = BigInt(atime.sec);
  times[1] = BigInt(atime.nsec);
  times[2] = BigInt(mtime.sec);
  times[3] = BigInt(mtime.nsec);
  if (c.utimensat(dirfd, path, times, flags) < 0) fail('utimensat', path);
}

export function unlinkat(dirfd: number, path: string, flags = 0): void {
  if (c.unlinkat(dirfd, path, flags) < 0) fail('unlinkat', path);
}

export function fsetxattr(fd: number, name: string, value: Buffer): void {
  if (c.fsetxattr(fd, name, value, value.length, 0) < 0) fail('fsetxattr', name);
}

/** Sets an xattr on the path itself, never a symlink's target. */
export function lsetxattr(path: string, name: string, value: Buffer): void {
  if (c.lsetxattr(path, name, value, value.length, 0) < 0) fail('lsetxattr', `${name} on ${path}`);
}

/** An xattr's value, or undefined when the file has none by that name. */
export function lgetxattr(path: string, name: string): Buffer | undefined {
  let buf = Buffer.alloc(256);
  for (;;) {
    const n = Number(c.lgetxattr(path, name, buf, buf.length));
    if (n >= 0) return buf.subarray(0, n);
    const errno = koffi.errno();
    if (errno === 61) return undefined; // ENODATA
    if (errno !== 34) throw new SysError('lgetxattr', errno, `${name} on ${path}`); // not ERANGE
    buf = Buffer.alloc(buf.length * 16);
  }
}

/** The names of a path's xattrs (the path itself, not a symlink's target). */
export function llistxattr(path: string): string[] {
  let buf = Buffer.alloc(1024);
  for (;;) {
    const n = Number(c.llistxattr(path, buf, buf.length));
    if (n >= 0)
      return buf
        .subarray(0, n)
        .toString('utf8')
        .split('\0')
        .filter((s) => s);
    const errno = koffi.errno();
    if (errno !== 34) throw new SysError('llistxattr', errno, path);
    buf = Buffer.alloc(buf.length * 16);
  }
}

export function closeFd(fd: number): void {
  c.close(fd);
}

const FS_IOC_GETFLAGS = 0x80086601;
const FS_IOC_SETFLAGS = 0x40086602;
/** chattr's flags (include/uapi/linux/fs.h) this package sets. */
export const FS_FL = { TOPDIR: 0x00020000 };

/**
 * Adds inode flags (chattr) to the file or directory open as fd. False when
 * its file system has no such flags (tmpfs, overlayfs; ENOTTY and the like):
 * they are hints there is no harm in going without.
 */
export function addInodeFlags(fd: number, flags: number): boolean {
  const f = [0];
  if (!flagsIoctl(fd, FS_IOC_GETFLAGS, f, 'FS_IOC_GETFLAGS')) return false;
  if ((f[0] & flags) === flags) return true;
  f[0] |= flags;
  return flagsIoctl(fd, FS_IOC_SETFLAGS, f, 'FS_IOC_SETFLAGS');
}

/** One FS_IOC_*FLAGS call: false where the file system has no such flags (ENOTTY, EOPNOTSUPP, EINVAL). */
function flagsIoctl(fd: number, request: number, flags: number[], name: string): boolean {
  if (c.ioctlFlags(fd, request, flags) >= 0) return true;
  const errno = koffi.errno();
  if (errno === 25 || errno === 95 || errno === 22) return false;
  throw new SysError('ioctl', errno, name);
}

/** Flushes the whole file system holding fd to disk. */
export function syncfs(fd: number): void {
  if (c.syncfs(fd) < 0) fail('syncfs', `fd ${fd}`);
}

/**
 * syncfs on libuv's thread pool: the event loop goes on while the disk
 * catches up. (errno is not carried back from there; syncfs fails with EIO
 * for what it could not write, so it is read as that.)
 */
export function syncfsAsync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    c.syncfs.async(fd, (err: unknown, r: number) => {
      if (err) reject(err);
      else if (r < 0) reject(new SysError('syncfs', 5, `fd ${fd}`));
      else resolve();
    });
  });
}
