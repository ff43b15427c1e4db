export * from './cgroup.js';
export * from './layout.js';
export * from './resources.js';

import { rmdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readMountInfo } from '@ctr/sys/mountinfo';
import { type CgroupLayout, detectLayout } from './layout.js';

/** This host's cgroup layout. */
export async function hostLayout(): Promise<CgroupLayout> {
  return detectLayout(await readMountInfo());
}

/**
 * Removes a cgroup from every hierarchy mounted on this host (named ones such
 * as systemd's included, where an external runtime may also have made it) if
 * nothing is in it. For an instance's parent once its last container is gone:
 * while another container is in it, it stays.
 */
export async function removeCgroupIfEmpty(path: string): Promise<void> {
  if (!path || path.startsWith('/') || path.split('/').includes('..')) throw new Error(`invalid cgroup path ${path}`);
  const mounts = (await readMountInfo()).filter((m) => m.fsType === 'cgroup' || m.fsType === 'cgroup2');
  for (const m of mounts) {
    try {
      await rmdir(join(m.mountPoint, path));
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOENT' && code !== 'EBUSY' && code !== 'ENOTEMPTY') throw err;
    }
  }
}
