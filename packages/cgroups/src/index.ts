export * from './cgroup.js';
export * from './layout.js';
export * from './resources.js';

import { constants, openSync, rmdirSync, write } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type MountInfo, readMountInfo } from '@ctr/sys/mountinfo';
import { type CgroupLayout, detectLayout, type V1Controller } from './layout.js';

/** This host's cgroup layout (from `mounts`, this process's mountinfo, when the caller has read it already). */
export async function hostLayout(mounts?: MountInfo[]): Promise<CgroupLayout> {
  mounts ??= await readMountInfo();
  mountPoints ??= Promise.resolve(cgroupMounts(mounts));
  return detectLayout(mounts);
}

let mountPoints: Promise<string[]> | undefined;

const cgroupMounts = (all: MountInfo[]) =>
  all.filter((m) => m.fsType === 'cgroup' || m.fsType === 'cgroup2').map((m) => m.mountPoint);

/**
 * Where this host's cgroup hierarchies are mounted, read once per process (or
 * taken from hostLayout's read): a host mounts them as it boots, and reading
 * mountinfo again was some 1-3 ms of every `run --rm` (the delete of an
 * instance's last container removes its parent).
 */
function cgroupMountPoints(): Promise<string[]> {
  mountPoints ??= readMountInfo().then(cgroupMounts);
  mountPoints.catch(() => {
    mountPoints = undefined;
  });
  return mountPoints;
}

/**
 * Removes a cgroup from every hierarchy mounted on this host (named ones such
 * as systemd's included, where an external runtime may also have made it) if
 * nothing is in it. For an instance's parent once its last container is gone:
 * while another container is in it, it stays.
 */
export async function removeCgroupIfEmpty(path: string): Promise<void> {
  if (!path || path.startsWith('/') || path.split('/').includes('..')) throw new Error(`invalid cgroup path ${path}`);
  for (const mountPoint of await cgroupMountPoints()) {
    try {
      rmdirSync(join(mountPoint, path));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'EBUSY' && code !== 'ENOTEMPTY') throw err;
    }
  }
}

/**
 * Starts, in the background, what the kernel makes the first cgroup move
 * after a quiet spell wait for. Every move (a write to cgroup.procs, v1 or
 * v2) takes cgroup_threadgroup_rwsem for writing, and after a quiet spell
 * that waits out an RCU grace period: some 10 ms here, of a container's
 * start. Moves within about one more grace period do not wait. prime() moves
 * this process to the cgroup it is in already (a move that changes nothing)
 * with one write on a thread-pool thread, through a file opened ahead, so it
 * runs even while the main thread is busy (spawning the init): the init
 * placed meanwhile waits for what is left of the grace period, or not at all.
 * It only saves time: where the file cannot be opened, prime() does nothing.
 */
export class CgroupMovePrimer {
  private constructor(private readonly fd: number | undefined) {}

  static async open(layout: CgroupLayout): Promise<CgroupMovePrimer> {
    try {
      const own = (await readFile('/proc/self/cgroup', 'utf8')).split('\n').map((l) => l.split(':'));
      let procs: string | undefined;
      for (const [controller, mount] of Object.entries(layout.v1) as [V1Controller, string | undefined][]) {
        const line = own.find((f) => f.length >= 3 && f[1].split(',').includes(controller));
        if (mount && line) {
          procs = join(mount, line.slice(2).join(':'), 'cgroup.procs');
          break;
        }
      }
      const unified = own.find((f) => f[0] === '0' && f[1] === '');
      if (!procs && layout.unified && unified) procs = join(layout.unified, unified.slice(2).join(':'), 'cgroup.procs');
      if (!procs) return new CgroupMovePrimer(undefined);
      return new CgroupMovePrimer(openSync(procs, constants.O_WRONLY));
    } catch {
      return new CgroupMovePrimer(undefined);
    }
  }

  prime(): void {
    if (this.fd !== undefined) write(this.fd, String(process.pid), 0, () => undefined);
  }
}
