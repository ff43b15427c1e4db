/**
 * Which cgroup hierarchy serves which controller on this host, read from
 * mountinfo: unified (v2 at the top), legacy (v1 controllers), or hybrid (v1
 * controllers with a v2 mount beside them, as on this project's hosts: there
 * the v1 hierarchies do the work).
 */
import type { MountInfo } from '@ctr/sys/mountinfo';

export type CgroupMode = 'v2' | 'v1' | 'hybrid';

export const V1_CONTROLLERS = ['memory', 'cpu', 'cpuacct', 'cpuset', 'pids', 'freezer', 'devices', 'blkio'] as const;
export type V1Controller = (typeof V1_CONTROLLERS)[number];

export interface CgroupLayout {
  mode: CgroupMode;
  /** The v2 mount point (v2 and hybrid). */
  unified?: string;
  /** Mount point of each v1 controller (v1 and hybrid). */
  v1: Partial<Record<V1Controller, string>>;
}

export function detectLayout(mounts: MountInfo[]): CgroupLayout {
  const v1: Partial<Record<V1Controller, string>> = {};
  for (const m of mounts) {
    if (m.fsType !== 'cgroup') continue;
    for (const opt of m.superOptions) {
      if ((V1_CONTROLLERS as readonly string[]).includes(opt) && !v1[opt as V1Controller])
        v1[opt as V1Controller] = m.mountPoint;
    }
  }
  const unified = mounts.find((m) => m.fsType === 'cgroup2')?.mountPoint;
  const hasV1 = Object.keys(v1).length > 0;
  if (!hasV1 && unified) return { mode: 'v2', unified, v1 };
  if (hasV1 && unified) return { mode: 'hybrid', unified, v1 };
  if (hasV1) return { mode: 'v1', v1 };
  throw new Error('no cgroup filesystem is mounted');
}
