/** Disk usage of a directory tree (allocated bytes, hard links counted once), without following symlinks. */
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';

export async function duBytes(dir: string): Promise<number> {
  const seen = new Set<string>();
  let total = 0;
  const walk = async (path: string) => {
    const st = await lstat(path).catch(() => undefined);
    if (!st) return;
    if (st.nlink > 1) {
      const key = `${st.dev}:${st.ino}`;
      if (seen.has(key)) return;
      seen.add(key);
    }
    total += st.blocks * 512;
    if (!st.isDirectory()) return;
    for (const name of await readdir(path).catch(() => [] as string[])) await walk(join(path, name));
  };
  await walk(dir);
  return total;
}
