/**
 * Records of the processes ctrd runs, in the state dir. They are what lets a
 * new ctrd adopt services that outlived the old one instead of starting
 * duplicates. Written write-temp + rename, so a crash leaves old or new.
 */
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';

export interface ProcessRecord {
  name: string;
  pid: number;
  /** /proc start time (clock ticks): pid + start time name one process for good. */
  startTime: number;
  startedAt: string;
  restarts: number;
  version: string;
  /** Extra facts (the NATS url and port). */
  url?: string;
  port?: number;
}

export async function readRecord(path: string): Promise<ProcessRecord | undefined> {
  try {
    return JSON.parse(await readFile(path, 'utf8')) as ProcessRecord;
  } catch {
    return undefined;
  }
}

export async function writeRecord(path: string, record: ProcessRecord): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.${process.pid}.tmp`;
  await writeFile(tmp, `${JSON.stringify(record)}\n`, { mode: 0o600 });
  await rename(tmp, path);
}

export async function removeRecord(path: string): Promise<void> {
  await rm(path, { force: true });
}
