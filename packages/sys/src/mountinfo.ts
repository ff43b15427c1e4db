/** /proc/<pid>/mountinfo, parsed (proc(5)): which mounts exist and how. */
import { readFile } from 'node:fs/promises';

export interface MountInfo {
  id: number;
  parentId: number;
  /** major:minor of the device. */
  device: string;
  /** The root of the mount within its filesystem. */
  root: string;
  mountPoint: string;
  options: string[];
  /** shared:N, master:N, propagate_from:N, unbindable. */
  optionalFields: string[];
  fsType: string;
  source: string;
  superOptions: string[];
}

/** Paths escape space, tab, newline and backslash as octal (\040...). */
function unescapeField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, oct) => String.fromCharCode(Number.parseInt(oct, 8)));
}

export function parseMountInfo(text: string): MountInfo[] {
  const mounts: MountInfo[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    const fields = line.split(' ');
    const sep = fields.indexOf('-', 6);
    if (sep < 0 || fields.length < sep + 4) throw new Error(`malformed mountinfo line: ${line}`);
    mounts.push({
      id: Number(fields[0]),
      parentId: Number(fields[1]),
      device: fields[2],
      root: unescapeField(fields[3]),
      mountPoint: unescapeField(fields[4]),
      options: fields[5].split(','),
      optionalFields: fields.slice(6, sep),
      fsType: fields[sep + 1],
      source: unescapeField(fields[sep + 2]),
      superOptions: fields[sep + 3].split(','),
    });
  }
  return mounts;
}

export async function readMountInfo(pid: number | 'self' = 'self'): Promise<MountInfo[]> {
  return parseMountInfo(await readFile(`/proc/${pid}/mountinfo`, 'utf8'));
}

/** Mounts at or below a directory, deepest first (the order to unmount them). */
export function mountsUnder(mounts: MountInfo[], dir: string): MountInfo[] {
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  return mounts
    .filter((m) => m.mountPoint === dir || m.mountPoint.startsWith(prefix))
    .sort((a, b) => b.mountPoint.length - a.mountPoint.length);
}
