/** What a container's /sys/fs/cgroup should mount on this host, read from the host's own mounts. */
import { type MountInfo, readMountInfo } from '@ctr/sys/mountinfo';
import type { CgroupMountInfo } from './plan.js';

const OPTION_NOISE = new Set(['rw', 'ro', 'nosuid', 'nodev', 'noexec', 'relatime']);

/** From `mounts`, this process's mountinfo, when the caller has read it already. */
export async function hostCgroupInfo(mounts?: MountInfo[]): Promise<CgroupMountInfo> {
  mounts ??= await readMountInfo();
  if (mounts.some((m) => m.mountPoint === '/sys/fs/cgroup' && m.fsType === 'cgroup2')) {
    return { mode: 'v2', v1Controllers: [] };
  }
  const v1Controllers = mounts
    .filter((m) => m.mountPoint.startsWith('/sys/fs/cgroup/') && (m.fsType === 'cgroup' || m.fsType === 'cgroup2'))
    .map((m) => ({
      name: m.mountPoint.slice('/sys/fs/cgroup/'.length),
      options: m.superOptions.filter((o) => !OPTION_NOISE.has(o)).join(','),
    }))
    .filter((c) => !c.name.includes('/'));
  return { mode: 'v1', v1Controllers };
}
