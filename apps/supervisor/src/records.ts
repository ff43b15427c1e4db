/**
 * Records of the processes ctrd runs, in the state dir. They are what lets a
 * new ctrd adopt services that outlived the old one instead of starting
 * duplicates. Written write-temp + fsync + rename, so a crash leaves old or new.
 */
import { rm } from 'node:fs/promises';
import { readJsonFile, writeFileAtomicSync } from '@ctr/common/fsutil';

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
  // A record that cannot be read names no process to adopt.
  return readJsonFile<ProcessRecord>(path).catch(() => undefined);
}

export async function writeRecord(path: string, record: ProcessRecord): Promise<void> {
  writeFileAtomicSync(path, `${JSON.stringify(record)}\n`);
}

export async function removeRecord(path: string): Promise<void> {
  await rm(path, { force: true });
}
