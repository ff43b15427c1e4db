/**
 * Mount options as runc reads them, and a snapshot's mounts made real: what
 * the shim does for a container's rootfs and container-service for `cp` into
 * a stopped container.
 */
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { MS, mount, mountOverlay } from './libc.js';

/** runc's parseMountOptions: flags to set, flags to clear, propagation, and what goes to the filesystem as data. */
const FLAG_OPTIONS: Record<string, [set: boolean, flag: number]> = {
  ro: [true, MS.RDONLY],
  rw: [false, MS.RDONLY],
  nosuid: [true, MS.NOSUID],
  suid: [false, MS.NOSUID],
  nodev: [true, MS.NODEV],
  dev: [false, MS.NODEV],
  noexec: [true, MS.NOEXEC],
  exec: [false, MS.NOEXEC],
  sync: [true, MS.SYNCHRONOUS],
  async: [false, MS.SYNCHRONOUS],
  dirsync: [true, MS.DIRSYNC],
  mand: [true, MS.MANDLOCK],
  nomand: [false, MS.MANDLOCK],
  noatime: [true, MS.NOATIME],
  atime: [false, MS.NOATIME],
  nodiratime: [true, MS.NODIRATIME],
  diratime: [false, MS.NODIRATIME],
  relatime: [true, MS.RELATIME],
  norelatime: [false, MS.RELATIME],
  strictatime: [true, MS.STRICTATIME],
  nostrictatime: [false, MS.STRICTATIME],
  bind: [true, MS.BIND],
  rbind: [true, MS.BIND | MS.REC],
  remount: [true, MS.REMOUNT],
  defaults: [false, 0],
};
export const PROPAGATION: Record<string, number> = {
  private: MS.PRIVATE,
  rprivate: MS.PRIVATE | MS.REC,
  slave: MS.SLAVE,
  rslave: MS.SLAVE | MS.REC,
  shared: MS.SHARED,
  rshared: MS.SHARED | MS.REC,
  unbindable: MS.UNBINDABLE,
  runbindable: MS.UNBINDABLE | MS.REC,
};

export function parseMountOptions(options: string[] = []): { flags: number; propagation: number; data: string } {
  let flags = 0;
  let propagation = 0;
  const data: string[] = [];
  for (const o of options) {
    const f = FLAG_OPTIONS[o];
    if (f) flags = f[0] ? flags | f[1] : flags & ~f[1];
    else if (PROPAGATION[o] !== undefined) propagation |= PROPAGATION[o];
    else data.push(o);
  }
  return { flags, propagation, data: data.join(',') };
}

/** A snapshot mount, as the snapshotter describes it. */
export interface SnapshotMount {
  type: string;
  source: string;
  options: string[];
}

/**
 * Mounts a snapshot's rootfs. An overlay goes through the new mount API, a
 * layer at a time, so an image may have more layers than one page of mount
 * options can name; anything else through mount(2).
 */
export function mountRootfs(m: SnapshotMount, target: string): void {
  if (m.type === 'overlay') {
    const kv = new Map(m.options.map((o) => [o.split('=')[0], o.slice(o.indexOf('=') + 1)]));
    const simple = [...kv.keys()].every((k) => ['lowerdir', 'upperdir', 'workdir', 'ro', 'rw', 'volatile'].includes(k));
    const lower = kv.get('lowerdir');
    const work = kv.get('workdir');
    // A volatile mount leaves work/incompat/volatile behind, and overlayfs refuses that work dir from then
    // on (the upper may be torn by a crash). A volatile layer is mounted again only after its own clean
    // umount (a --rm container restarted): after a crash it is thrown away, never mounted.
    if (kv.has('volatile') && work) rmSync(join(work, 'work', 'incompat'), { recursive: true, force: true });
    if (simple && lower) {
      mountOverlay(target, {
        lower: lower.split(':'),
        upper: kv.get('upperdir'),
        work,
        readonly: kv.has('ro'),
        volatile: kv.has('volatile'),
      });
      return;
    }
  }
  const { flags, data } = parseMountOptions(m.options);
  mount(m.source, target, m.type, flags, data || null);
}
