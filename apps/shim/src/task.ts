/**
 * A task: a container's init process and its exec'd processes, as one shim
 * holds them. The exit status of the init is written to the shim's directory
 * (whole, to outlive any process's crash) before anyone is told, and kept
 * until the task is deleted.
 */
import { rmSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { constants } from 'node:os';
import { dirname, isAbsolute, join } from 'node:path';
import { Cgroup, type CgroupLayout, type Resources, removeCgroupIfEmpty } from '@ctr/cgroups';
import { failedPrecondition, invalidArgument, notFound } from '@ctr/common/errors';
import type { Event } from '@ctr/common/event-types';
import { writeFileAtomicSync } from '@ctr/common/fsutil';
import type { Logger } from '@ctr/common/log';
import { type Process, type Resources as OciResources, type Spec, validateSpec } from '@ctr/oci';
import { type ExitRecord, exitRecordPath } from '@ctr/shim-client';
import { MNT, mountRootfs, umount } from '@ctr/sys';
import { InitError } from './init/launch.js';
import { ProcessIO } from './io.js';
import { DEFAULT_LOG_LIMITS, JsonLogWriter } from '@ctr/common/jsonlog';
import type { Launched, Runtime } from './runtime.js';

export type { ExitRecord };

export type Status = 'created' | 'running' | 'stopped';

export interface RootfsMount {
  type: string;
  source: string;
  options: string[];
}

export interface CreateOptions {
  id: string;
  bundle: string;
  rootfs: RootfsMount[];
  terminal: boolean;
  stdin: boolean;
  log?: { path: string; maxSize: number; maxFiles: number; compress: boolean };
  cgroupParent: string;
}

export interface TaskContext {
  log: Logger;
  /** Where exit records live (the shim's dir). */
  dir: string;
  cgroups: CgroupLayout;
  runtime: Runtime;
  publish(event: Event): void;
}

const SIGNAL_NAMES = new Map(Object.entries(constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]));

function signalName(signal: number): NodeJS.Signals {
  const name = SIGNAL_NAMES.get(signal);
  if (!name) throw invalidArgument(`invalid signal ${signal}`);
  return name;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One process of a task: the init ('' exec id) or an exec. */
export class Proc {
  status: Status = 'created';
  pid = 0;
  exit?: ExitRecord;
  launched?: Launched;
  /** The start in progress; a start that fails decides the exit code (127: no such command). */
  starting?: Promise<void>;
  startFailure?: number;
  readonly #exited: Promise<ExitRecord>;
  #resolveExit!: (r: ExitRecord) => void;

  constructor(
    readonly execId: string,
    readonly io: ProcessIO,
    readonly spec?: Process,
  ) {
    this.#exited = new Promise((resolve) => {
      this.#resolveExit = resolve;
    });
  }

  /** Resolves with the exit once the process has exited and its output is drained. */
  wait(): Promise<ExitRecord> {
    return this.#exited;
  }

  finish(record: ExitRecord): void {
    this.exit = record;
    this.status = 'stopped';
    this.#resolveExit(record);
  }

  kill(signal: number): void {
    if (this.status !== 'running' && this.status !== 'created') {
      throw failedPrecondition(`process ${this.execId || 'init'} is not running`);
    }
    if (!this.pid) throw failedPrecondition('the process has not been created');
    try {
      process.kill(this.pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  }
}

/** OCI resources → ctr's cgroup limits. */
export function cgroupResources(r: OciResources | undefined): Resources {
  return {
    memory: r?.memory?.limit,
    memorySwap: r?.memory?.swap,
    memoryReservation: r?.memory?.reservation,
    cpuQuota: r?.cpu?.quota,
    cpuPeriod: r?.cpu?.period,
    cpuShares: r?.cpu?.shares,
    cpusetCpus: r?.cpu?.cpus,
    cpusetMems: r?.cpu?.mems,
    pidsLimit: r?.pids?.limit,
  };
}

export class Task {
  readonly execs = new Map<string, Proc>();
  paused = false;

  private constructor(
    readonly id: string,
    readonly bundle: string,
    readonly spec: Spec,
    readonly init: Proc,
    readonly cgroup: Cgroup,
    private readonly ctx: TaskContext,
    private readonly rootfsTarget: string | undefined,
  ) {}

  static exitFile(dir: string, id: string): string {
    return exitRecordPath(dir, id);
  }

  /** Mounts the rootfs, makes the cgroup, and runs the init up to where it waits to exec. */
  static async create(o: CreateOptions, ctx: TaskContext): Promise<Task> {
    let spec: Spec;
    try {
      spec = validateSpec(JSON.parse(await readFile(join(o.bundle, 'config.json'), 'utf8')) as Spec);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw notFound(`bundle ${o.bundle} has no config.json`);
      throw invalidArgument(`bundle ${o.bundle}: ${(err as Error).message}`);
    }
    if (spec.process) spec.process.terminal = o.terminal;
    const rootPath = spec.root?.path ?? 'rootfs';
    const rootfs = isAbsolute(rootPath) ? rootPath : join(o.bundle, rootPath);
    spec.root = { ...spec.root, path: rootfs };
    const cgroupPath = (spec.linux?.cgroupsPath ?? join(o.cgroupParent, o.id)).replace(/^\/+/, '');
    spec.linux = { ...spec.linux, cgroupsPath: `/${cgroupPath}` };

    const undo: (() => Promise<void>)[] = [];
    const rollback = async () => {
      for (const u of undo.reverse()) await u().catch((err) => ctx.log.warn({ err }, 'rollback step failed'));
    };
    try {
      let rootfsTarget: string | undefined;
      if (o.rootfs.length) {
        if (o.rootfs.length > 1) throw invalidArgument('one rootfs mount at most');
        const m = o.rootfs[0];
        await mkdir(rootfs, { recursive: true });
        mountRootfs(m, rootfs);
        rootfsTarget = rootfs;
        undo.push(async () => umount(rootfs, MNT.DETACH));
      }
      const cgroup = Cgroup.at(ctx.cgroups, cgroupPath);
      await cgroup.create(cgroupResources(spec.linux?.resources));
      undo.push(async () => {
        await cgroup.destroy();
        const parent = cgroup.parent();
        if (parent) await removeCgroupIfEmpty(parent.path).catch(() => undefined);
      });

      let log: JsonLogWriter | undefined;
      if (o.log?.path) {
        await mkdir(dirname(o.log.path), { recursive: true });
        log = new JsonLogWriter({
          path: o.log.path,
          maxSize: o.log.maxSize || DEFAULT_LOG_LIMITS.maxSize,
          maxFiles: o.log.maxFiles || DEFAULT_LOG_LIMITS.maxFiles,
          compress: o.log.compress,
        });
      }
      const io = new ProcessIO({ terminal: o.terminal, stdin: o.stdin, log });
      undo.push(async () => {
        io.abandon();
        io.close();
      });
      const init = new Proc('', io, spec.process);
      const launched = await ctx.runtime.create({ id: o.id, bundle: o.bundle, spec, io, cgroup });
      undo.push(() => ctx.runtime.delete(o.id));
      init.launched = launched;
      init.pid = launched.pid;
      const task = new Task(o.id, o.bundle, spec, init, cgroup, ctx, rootfsTarget);
      task.#watch(init, launched);
      ctx.publish({ $case: 'taskCreated', value: { containerId: o.id, pid: launched.pid } });
      return task;
    } catch (err) {
      await rollback();
      throw err;
    }
  }

  #watch(proc: Proc, launched: Launched) {
    void launched.exited.then(async (exit) => {
      await proc.starting?.catch(() => undefined);
      const code = proc.startFailure ?? exit.code;
      let oomKilled = false;
      if (!proc.execId && exit.signal === 9) {
        oomKilled = ((await this.cgroup.stats().catch(() => undefined))?.oomKills ?? 0) > 0;
      }
      const record: ExitRecord = {
        pid: proc.pid,
        exitStatus: code,
        exitedAt: exit.at.toISOString(),
        oomKilled,
      };
      if (!proc.execId) {
        // On disk before anyone hears of it: a client that comes later (a container-service that
        // crashed, a shim that died) still learns the truth. In one go: the exit waits on it, and
        // thread-pool trips made it some 3 ms of a `run --rm`. Not fsynced: it must outlive a crash
        // of any process, which the page cache does; a host that goes down ends every container.
        try {
          writeFileAtomicSync(Task.exitFile(this.ctx.dir, this.id), JSON.stringify(record), 0o600, { sync: 'none' });
        } catch (err) {
          this.ctx.log.error({ err, id: this.id }, 'cannot write the exit record');
        }
      }
      // Output still in the pipes belongs before the exit; a process that left
      // a child holding them does not get to hold the exit back for long.
      await Promise.race([proc.io.done, sleep(2000)]);
      proc.finish(record);
      this.ctx.log.info({ id: this.id, execId: proc.execId, ...record }, 'exited');
      if (oomKilled) this.ctx.publish({ $case: 'taskOom', value: { containerId: this.id } });
      this.ctx.publish({
        $case: 'taskExited',
        value: {
          containerId: this.id,
          execId: proc.execId,
          pid: proc.pid,
          exitStatus: code,
          exitedAt: exit.at,
          oomKilled,
        },
      });
    });
  }

  process(execId: string): Proc {
    if (!execId) return this.init;
    const p = this.execs.get(execId);
    if (!p) throw notFound(`exec ${execId} not found in container ${this.id}`);
    return p;
  }

  async start(execId: string): Promise<number> {
    const proc = this.process(execId);
    if (proc.status !== 'created') throw failedPrecondition(`process ${execId || this.id} has already been started`);
    if (execId) {
      if (this.init.status !== 'running') throw failedPrecondition(`container ${this.id} is not running`);
      if (this.paused) throw failedPrecondition(`container ${this.id} is paused, unpause it first`);
      try {
        const launched = await this.ctx.runtime.exec({
          id: this.id,
          execId,
          spec: this.spec,
          process: proc.spec as Process,
          initPid: this.init.pid,
          io: proc.io,
          cgroup: this.cgroup,
        });
        proc.launched = launched;
        proc.pid = launched.pid;
        proc.status = 'running';
        this.#watch(proc, launched);
      } catch (err) {
        proc.io.abandon();
        proc.finish({
          pid: 0,
          exitStatus: err instanceof InitError ? err.exitCode : 126,
          exitedAt: new Date().toISOString(),
          oomKilled: false,
        });
        throw err;
      }
      this.ctx.publish({ $case: 'taskExecStarted', value: { containerId: this.id, execId, pid: proc.pid } });
      return proc.pid;
    }
    proc.starting = proc.launched?.start();
    try {
      await proc.starting;
    } catch (err) {
      // The init could not exec: it has ended, and says why (exit 127 for a missing command).
      proc.startFailure = err instanceof InitError ? err.exitCode : 126;
      proc.status = 'stopped';
      throw err;
    }
    proc.status = 'running';
    this.ctx.publish({ $case: 'taskStarted', value: { containerId: this.id, pid: proc.pid } });
    return proc.pid;
  }

  addExec(execId: string, spec: Process, terminal: boolean, stdin: boolean): void {
    if (!execId) throw invalidArgument('an exec needs an id');
    if (this.execs.has(execId)) throw failedPrecondition(`exec ${execId} already exists`);
    if (this.init.status !== 'running') throw failedPrecondition(`container ${this.id} is not running`);
    if (!spec.args?.length) throw invalidArgument('the exec has no command');
    const proc = new Proc(execId, new ProcessIO({ terminal, stdin, buffer: true }), { ...spec, terminal });
    this.execs.set(execId, proc);
    this.ctx.publish({ $case: 'taskExecAdded', value: { containerId: this.id, execId } });
  }

  async kill(execId: string, signal: number, all: boolean): Promise<void> {
    if (all && !execId) {
      if (this.init.status === 'stopped') throw failedPrecondition(`container ${this.id} is not running`);
      await this.cgroup.killAll(signalName(signal));
    } else {
      this.process(execId).kill(signal);
    }
    // A frozen process cannot act on its signal.
    if (this.paused && (signal === 9 || signal === 15)) await this.resume();
    this.ctx.publish({ $case: 'taskKilled', value: { containerId: this.id, signal } });
  }

  async pause(): Promise<void> {
    if (this.init.status !== 'running') throw failedPrecondition(`container ${this.id} is not running`);
    if (this.paused) throw failedPrecondition(`container ${this.id} is already paused`);
    await this.cgroup.freeze();
    this.paused = true;
    this.ctx.publish({ $case: 'taskPaused', value: { containerId: this.id } });
  }

  async resume(): Promise<void> {
    if (!this.paused) throw failedPrecondition(`container ${this.id} is not paused`);
    await this.cgroup.thaw();
    this.paused = false;
    this.ctx.publish({ $case: 'taskResumed', value: { containerId: this.id } });
  }

  async update(resources: OciResources): Promise<void> {
    if (this.init.status === 'stopped') throw failedPrecondition(`container ${this.id} is not running`);
    await this.cgroup.apply(cgroupResources(resources));
  }

  /** Kills every process of the task and deletes it (a forced shutdown of the shim). */
  async destroy(): Promise<void> {
    if (this.init.status !== 'stopped') {
      if (this.paused) await this.resume().catch(() => undefined);
      await this.cgroup.killAll('SIGKILL').catch(() => undefined);
      if (this.init.status === 'running') this.init.kill(9);
    }
    // A created task is ended by delete itself; a running one must have exited first.
    if (this.init.status === 'running') await this.init.wait();
    for (const e of this.execs.values()) if (e.status === 'running') await e.wait();
    for (const execId of [...this.execs.keys()]) await this.delete(execId);
    await this.delete('');
  }

  /** Releases a stopped process; for the init, the whole task (cgroup, rootfs mount, exit record). */
  async delete(execId: string): Promise<ExitRecord> {
    const proc = this.process(execId);
    if (execId) {
      if (proc.status === 'running') throw failedPrecondition(`exec ${execId} is still running`);
      this.execs.delete(execId);
      proc.io.close();
      return proc.exit ?? { pid: 0, exitStatus: 0, exitedAt: new Date(0).toISOString(), oomKilled: false };
    }
    if (proc.status === 'running') throw failedPrecondition(`container ${this.id} is running: stop it first`);
    if (proc.status === 'created') {
      // Created but never started: end the waiting init.
      proc.kill(9);
    }
    const exit = await proc.wait();
    for (const e of this.execs.values()) e.io.close();
    proc.io.close();
    await this.ctx.runtime.delete(this.id);
    if (this.paused) await this.cgroup.thaw().catch(() => undefined);
    await this.cgroup.killAll('SIGKILL').catch(() => undefined);
    await this.cgroup.destroy();
    // The instance's parent goes with its last container (another shim may still use it: then it stays).
    const parent = this.cgroup.parent();
    if (parent) await removeCgroupIfEmpty(parent.path).catch(() => undefined);
    if (this.rootfsTarget) {
      try {
        umount(this.rootfsTarget, MNT.DETACH);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw err;
      }
    }
    // In place: a thread-pool trip for it was some 2 ms of every `--rm`.
    rmSync(Task.exitFile(this.ctx.dir, this.id), { force: true });
    this.ctx.publish({
      $case: 'taskDeleted',
      value: { containerId: this.id, pid: proc.pid, exitStatus: exit.exitStatus },
    });
    return exit;
  }
}
