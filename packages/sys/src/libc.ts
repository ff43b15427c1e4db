/**
 * libc through koffi: the syscalls that are safe to make from a multi-threaded
 * Node process. Process-wide namespace work (clone, mount and user namespaces)
 * is not here: it belongs to native/ctr-init. Network namespaces, which are a
 * thread's own, are in netns.ts. This package is the only one that loads koffi.
 */
import { constants } from 'node:os';
import koffi from 'koffi';

/** The C library, for the other modules of this package. */
export const libc = koffi.load('libc.so.6');

const c = {
  mount: libc.func(
    'int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const char *data)',
  ),
  umount2: libc.func('int umount2(const char *target, int flags)'),
  prctl: libc.func('int prctl(int option, ...)'),
  syscall: libc.func('long syscall(long number, ...)'),
  strerror: libc.func('const char *strerror(int errnum)'),
  ioctl: libc.func('int ioctl(int fd, unsigned long request, ...)'),
  waitpid: libc.func('int waitpid(int pid, int *status, int options)'),
  close: libc.func('int close(int fd)'),
};

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([name, num]) => [num, name]));

/** A failed syscall, with errno's name as `code` like Node's own system errors. */
export class SysError extends Error {
  readonly code: string;
  constructor(
    readonly syscall: string,
    readonly errno: number,
    detail: string,
  ) {
    super(`${syscall} ${detail}: ${c.strerror(errno)}`);
    this.code = errnoNames.get(errno) ?? `E${errno}`;
    this.name = 'SysError';
  }
}

function check(ret: number | bigint, syscall: string, detail: string): number {
  const n = Number(ret);
  if (n < 0) throw new SysError(syscall, koffi.errno(), detail);
  return n;
}

/** mount(2) flags. */
export const MS = {
  RDONLY: 0x1,
  NOSUID: 0x2,
  NODEV: 0x4,
  NOEXEC: 0x8,
  SYNCHRONOUS: 0x10,
  REMOUNT: 0x20,
  MANDLOCK: 0x40,
  DIRSYNC: 0x80,
  NOATIME: 0x400,
  NODIRATIME: 0x800,
  BIND: 0x1000,
  MOVE: 0x2000,
  REC: 0x4000,
  UNBINDABLE: 0x20000,
  PRIVATE: 0x40000,
  SLAVE: 0x80000,
  SHARED: 0x100000,
  RELATIME: 0x200000,
  STRICTATIME: 0x1000000,
} as const;

/** umount2(2) flags. */
export const MNT = { FORCE: 0x1, DETACH: 0x2, EXPIRE: 0x4, NOFOLLOW: 0x8 } as const;

export function mount(
  source: string,
  target: string,
  fstype: string | null,
  flags = 0,
  data: string | null = null,
): void {
  check(c.mount(source, target, fstype, flags, data), 'mount', `${fstype ?? 'bind'} ${source} on ${target}`);
}

export function umount(target: string, flags = 0): void {
  check(c.umount2(target, flags), 'umount2', target);
}

const PR_SET_CHILD_SUBREAPER = 36;
const PR_GET_CHILD_SUBREAPER = 37;

/** Makes this process adopt orphaned descendants, as a shim must for its container's processes. */
export function setChildSubreaper(on = true): void {
  check(c.prctl(PR_SET_CHILD_SUBREAPER, 'unsigned long', on ? 1 : 0), 'prctl', 'PR_SET_CHILD_SUBREAPER');
}

export function isChildSubreaper(): boolean {
  const out = Buffer.alloc(4);
  check(c.prctl(PR_GET_CHILD_SUBREAPER, 'int *', out), 'prctl', 'PR_GET_CHILD_SUBREAPER');
  return out.readInt32LE(0) !== 0;
}

const SYS_pidfd_send_signal = 424;
const SYS_pidfd_open = 434;

/** A pidfd refers to one process for good: no PID reuse race when signalling or polling it. */
export function pidfdOpen(pid: number): number {
  return check(c.syscall(SYS_pidfd_open, 'int', pid, 'unsigned int', 0), 'pidfd_open', `pid ${pid}`);
}

export function pidfdSendSignal(pidfd: number, signal: number): void {
  check(
    c.syscall(SYS_pidfd_send_signal, 'int', pidfd, 'int', signal, 'void *', null, 'unsigned int', 0),
    'pidfd_send_signal',
    `signal ${signal}`,
  );
}

const TIOCSWINSZ = 0x5414;
const TIOCGWINSZ = 0x5413;

/** Sets a terminal's size (struct winsize: rows, cols, xpixel, ypixel); its foreground group gets SIGWINCH. */
export function setWindowSize(fd: number, cols: number, rows: number): void {
  const ws = Buffer.alloc(8);
  ws.writeUInt16LE(rows, 0);
  ws.writeUInt16LE(cols, 2);
  check(c.ioctl(fd, TIOCSWINSZ, 'void *', ws), 'ioctl', 'TIOCSWINSZ');
}

export function getWindowSize(fd: number): { cols: number; rows: number } {
  const ws = Buffer.alloc(8);
  check(c.ioctl(fd, TIOCGWINSZ, 'void *', ws), 'ioctl', 'TIOCGWINSZ');
  return { rows: ws.readUInt16LE(0), cols: ws.readUInt16LE(2) };
}

const WNOHANG = 1;

/**
 * Reaps one child without blocking: its raw wait status, or undefined while it
 * runs. Only for children Node did not spawn (orphans a subreaper adopted):
 * libuv waits for its own.
 */
export function reapChild(pid: number): number | undefined {
  const status = Buffer.alloc(4);
  const r = Number(c.waitpid(pid, status, WNOHANG));
  if (r === 0) return undefined;
  if (r < 0) throw new SysError('waitpid', koffi.errno(), `pid ${pid}`);
  return status.readInt32LE(0);
}

const SYS_pidfd_getfd = 438;

/** A duplicate of another process's file descriptor (pidfd_getfd, Linux 5.6): how the shim takes a pty master made inside the container. */
export function pidfdGetfd(pidfd: number, targetFd: number): number {
  return check(
    c.syscall(SYS_pidfd_getfd, 'int', pidfd, 'int', targetFd, 'unsigned int', 0),
    'pidfd_getfd',
    `fd ${targetFd}`,
  );
}

const SYS_move_mount = 429;
const SYS_fsopen = 430;
const SYS_fsconfig = 431;
const SYS_fsmount = 432;
const FSCONFIG_SET_FLAG = 0;
const FSCONFIG_SET_STRING = 1;
const FSCONFIG_CMD_CREATE = 6;
const MOVE_MOUNT_F_EMPTY_PATH = 0x4;
const MOUNT_ATTR_RDONLY = 0x1;

export interface OverlayOptions {
  /** Lower layers, top (nearest) first. */
  lower: string[];
  upper?: string;
  work?: string;
  readonly?: boolean;
  /**
   * overlayfs' volatile (Linux 5.10): no syncs reach the upper file system,
   * at umount either (where a full syncfs of it otherwise runs). The upper
   * dir is unusable after a crash; fit for a layer thrown away at exit.
   */
  volatile?: boolean;
}

/**
 * Mounts an overlay through the new mount API, one `lowerdir+` per layer
 * (Linux 6.8): no single option string, so no page-size limit on how many
 * layers an image may have (overlayfs itself allows 500).
 */
export function mountOverlay(target: string, o: OverlayOptions): void {
  const fs = check(c.syscall(SYS_fsopen, 'const char *', 'overlay', 'unsigned int', 1), 'fsopen', 'overlay');
  const set = (key: string, value: string | null) =>
    check(
      c.syscall(
        SYS_fsconfig,
        'int',
        fs,
        'unsigned int',
        value === null ? FSCONFIG_SET_FLAG : FSCONFIG_SET_STRING,
        'const char *',
        key,
        'const char *',
        value,
        'int',
        0,
      ),
      'fsconfig',
      `${key}${value === null ? '' : `=${value}`}`,
    );
  let mnt = -1;
  try {
    for (const l of o.lower) set('lowerdir+', l);
    if (o.upper) set('upperdir', o.upper);
    if (o.work) set('workdir', o.work);
    if (o.volatile) set('volatile', null);
    check(
      c.syscall(SYS_fsconfig, 'int', fs, 'unsigned int', FSCONFIG_CMD_CREATE, 'void *', null, 'void *', null, 'int', 0),
      'fsconfig',
      'create overlay',
    );
    mnt = check(
      c.syscall(SYS_fsmount, 'int', fs, 'unsigned int', 1, 'unsigned int', o.readonly ? MOUNT_ATTR_RDONLY : 0),
      'fsmount',
      'overlay',
    );
    check(
      c.syscall(
        SYS_move_mount,
        'int',
        mnt,
        'const char *',
        '',
        'int',
        -100,
        'const char *',
        target,
        'unsigned int',
        MOVE_MOUNT_F_EMPTY_PATH,
      ),
      'move_mount',
      `overlay on ${target}`,
    );
  } finally {
    if (mnt >= 0) c.close(mnt);
    c.close(fs);
  }
}
