/**
 * Files that a crash must leave whole: write a temporary file beside the
 * target, fsync it, rename it over the target, fsync the directory. A kill -9
 * or a power cut at any instant leaves the old content or the new, never a mix.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/**
 * In one go on the calling thread, for the small files it is used for (the
 * snapshotter's metadata, exit records, service records, credentials, ingest
 * metadata, seccomp programs): some 0.5 ms here, where nine trips through
 * libuv's thread pool took 1 ms idle and 3-7 ms on a busy host, on the path
 * of every create and every `--rm`.
 *
 * `sync`: 'full' fsyncs the file before the rename and the directory after
 * it. 'file' leaves out the directory's: a power cut may then undo the
 * rename, but never tears the file (for a change that may be lost, such as a
 * removal that a later sweep makes again). 'none' leaves out both, for a file
 * that must only outlive a process (the page cache keeps it): a kill -9
 * still leaves the old content or the new; a power cut may leave neither.
 */
export function writeFileAtomicSync(
  path: string,
  data: string | Uint8Array,
  mode = 0o600,
  opts: { sync?: 'full' | 'file' | 'none' } = {},
): void {
  const sync = opts.sync ?? 'full';
  const dir = dirname(path);
  mkdirSync(dir, { recursive: true });
  const tmp = join(dir, `.${basename(path)}.${process.pid}.tmp`);
  try {
    const fd = openSync(tmp, 'w', mode);
    try {
      writeFileSync(fd, data);
      if (sync !== 'none') fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  if (sync !== 'full') return;
  const d = openSync(dir, 'r');
  try {
    fsyncSync(d);
  } finally {
    closeSync(d);
  }
}

/**
 * Reads a JSON file; undefined when it does not exist. Any other failure (no
 * access, not JSON) throws: a caller must never mistake an unreadable store
 * for an empty one.
 */
export async function readJsonFile<T>(path: string): Promise<T | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return JSON.parse(text) as T;
  } catch (err) {
    throw new Error(`${path} is not valid JSON: ${(err as Error).message}`);
  }
}
