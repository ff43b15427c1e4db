/**
 * A daemon process that ctrd owns: started detached (its own session, so it
 * outlives ctrd), or adopted from its record after a ctrd restart. Liveness is
 * read from /proc by pid and start time, which works the same for children
 * and for adopted processes that are not ctrd's children.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { processAlive, readCmdline, readProcStat } from '@ctr/sys/proc';
import { type ProcessRecord, readRecord, removeRecord, writeRecord } from './records.js';

export interface ProcessSpec {
  name: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  logFile: string;
  recordPath: string;
  version: string;
  /** Decides whether a running process's argv is this daemon (guards against pid reuse by a stranger). */
  matches(argv: string[]): boolean;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class ManagedProcess {
  record: ProcessRecord | undefined;
  #onExit: (() => void) | undefined;

  constructor(readonly spec: ProcessSpec) {}

  get pid(): number {
    return this.record?.pid ?? 0;
  }

  /** Calls back as soon as a child we spawned exits (adopted ones are found by polling). */
  onChildExit(fn: () => void) {
    this.#onExit = fn;
  }

  /** Takes over a process a previous ctrd started, if its record names a live one of ours. */
  async adopt(): Promise<boolean> {
    const record = await readRecord(this.spec.recordPath);
    if (!record) return false;
    const argv = await readCmdline(record.pid);
    if (!argv || !this.spec.matches(argv) || !(await processAlive(record.pid, record.startTime))) {
      return false;
    }
    this.record = record;
    return true;
  }

  async start(restarts: number, extra: Partial<ProcessRecord> = {}): Promise<void> {
    mkdirSync(dirname(this.spec.logFile), { recursive: true });
    const log = openSync(this.spec.logFile, 'a', 0o640);
    try {
      const child = spawn(this.spec.command, this.spec.args, {
        detached: true,
        stdio: ['ignore', log, log],
        env: this.spec.env ?? process.env,
      });
      await new Promise<void>((resolve, reject) => {
        child.once('spawn', resolve);
        child.once('error', reject);
      });
      child.once('exit', () => this.#onExit?.());
      child.unref();
      const stat = await readProcStat(child.pid as number);
      this.record = {
        name: this.spec.name,
        pid: child.pid as number,
        startTime: stat?.startTime ?? 0,
        startedAt: new Date().toISOString(),
        restarts,
        version: this.spec.version,
        ...extra,
      };
      await writeRecord(this.spec.recordPath, this.record);
    } finally {
      closeSync(log);
    }
  }

  async alive(): Promise<boolean> {
    return this.record !== undefined && processAlive(this.record.pid, this.record.startTime);
  }

  async saveRecord(): Promise<void> {
    if (this.record) await writeRecord(this.spec.recordPath, this.record);
  }

  /** SIGTERM, then SIGKILL after the grace period; forgets the record. */
  async stop(graceMs: number): Promise<void> {
    if (this.record && (await this.alive())) {
      const { pid } = this.record;
      this.#signal(pid, 'SIGTERM');
      const until = Date.now() + graceMs;
      while (Date.now() < until && (await this.alive())) await sleep(25);
      if (await this.alive()) {
        this.#signal(pid, 'SIGKILL');
        while (await this.alive()) await sleep(25);
      }
    }
    this.record = undefined;
    await removeRecord(this.spec.recordPath);
  }

  /** Sends a signal to our process (checked by start time first). */
  async kill(signal: NodeJS.Signals): Promise<void> {
    if (this.record && (await this.alive())) this.#signal(this.record.pid, signal);
  }

  #signal(pid: number, signal: NodeJS.Signals) {
    try {
      process.kill(pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
}
