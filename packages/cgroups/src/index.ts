export * from './cgroup.js';
export * from './layout.js';
export * from './resources.js';

import { readMountInfo } from '@ctr/sys/mountinfo';
import { type CgroupLayout, detectLayout } from './layout.js';

/** This host's cgroup layout. */
export async function hostLayout(): Promise<CgroupLayout> {
  return detectLayout(await readMountInfo());
}
