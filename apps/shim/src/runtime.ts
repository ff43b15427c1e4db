/**
 * How a task's processes come to be: native ctr-init (the default), or an
 * external OCI runtime (runc, crun) run on the same bundle. Both give the
 * shim the same thing: a process that is set up and waits to be started, and
 * its exit.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Cgroup, CgroupMovePrimer } from '@ctr/cgroups';
import { failedPrecondition, internal, invalidArgument } from '@ctr/common/errors';
import { renice } from '@ctr/common/priority';
import type { Process, Spec } from '@ctr/oci';
import { type Exit, exitOf, fitsLaunch, launchInit, type SpawnedInit, spawnInit } from './init/launch.js';
import { type CgroupMountInfo, planFromSpec } from './init/plan.js';
import type { SeccompFilters } from './init/seccomp.js';
import type { ProcessIO } from './io.js';
import type { Reaper } from './reaper.js';

export interface Launched {
  pid: number;
  /** Execs the user's command. */
  start(): Promise<void>;
  exited: Promise<Exit>;
}

export interface CreateContext {
  id: string;
  bundle: string;
  /** The spec with root.path absolute and cgroupsPath set. */
  spec: Spec;
  io: ProcessIO;
  cgroup: Cgroup;
}

export interface ExecContext {
  id: string;
  execId: string;
  spec: Spec;
  process: Process;
  /** The task's init, whose namespaces the exec joins. */
  initPid: number;
  io: ProcessIO;
  cgroup: Cgroup;
}

export interface Runtime {
  readonly name: string;
  create(c: CreateContext): Promise<Launched>;
  exec(c: ExecContext): Promise<Launched>;
  /** Forgets the task (the runtime's own state). */
  delete(id: string): Promise<void>;
}

const NS_FILES: Record<string, string> = {
  pid: 'pid',
  network: 'net',
  mount: 'mnt',
  ipc: 'ipc',
  uts: 'uts',
  user: 'user',
  cgroup: 'cgroup',
};

/** Writes a new user namespace's id maps (as root in the parent namespace, no setgroups dance needed). */
async function writeIdMaps(pid: number, spec: Spec) {
  const text = (maps: { containerID: number; hostID: number; size: number }[]) =>
    maps.map((m) => `${m.containerID} ${m.hostID} ${m.size}\n`).join('');
  const uid = spec.linux?.uidMappings ?? [];
  const gid = spec.linux?.gidMappings ?? [];
  if (uid.length) await writeFile(`/proc/${pid}/uid_map`, text(uid));
  if (gid.length) await writeFile(`/proc/${pid}/gid_map`, text(gid));
}

export class NativeRuntime implements Runtime {
  readonly name = 'ctr-init';
  /** A ctr-init spawned ahead, waiting for a container's plan (spare()). */
  #spare?: SpawnedInit;

  constructor(
    private readonly reaper: Reaper,
    private readonly cgroupInfo: CgroupMountInfo,
    private readonly primer: CgroupMovePrimer,
    private readonly filters: SeccompFilters,
  ) {}

  /**
   * Spawns a ctr-init ahead of the next create, with the stdio of a
   * container that has no terminal and no stdin (most): a warm shim's, while
   * it waits for its container. Spawning it was some 5 ms of a start (a fork
   * of this process, and ctr-init's exec and dynamic linking). One that does
   * not fit the container is killed and a fitting one spawned; one never
   * used ends with this process (its plan pipe closes).
   */
  spare(): void {
    if (this.#spare) return;
    const spare = spawnInit('create', ['ignore', 'pipe', 'pipe']);
    this.reaper.track(spare.child);
    this.#spare = spare;
  }

  /** Ends the spare (when the shim's containers run on another runtime). */
  dropSpare(): void {
    const spare = this.#spare;
    this.#spare = undefined;
    if (spare?.child.exitCode === null) spare.child.kill('SIGKILL');
  }

  /** The spare, when it fits a launch like `opts` (it then runs at the container's priority, not a warm shim's). */
  #takeSpare(opts: { mode: 'create' | 'exec'; stdio: ProcessIO['stdio'] }): SpawnedInit | undefined {
    const spare = this.#spare;
    if (!spare || opts.mode !== 'create') return undefined;
    if (!fitsLaunch(spare, opts)) {
      this.dropSpare();
      return undefined;
    }
    this.#spare = undefined;
    renice(0, spare.child.pid);
    return spare;
  }

  #onSpawn(io: ProcessIO) {
    return (child: ChildProcess) => {
      this.reaper.track(child);
      io.connect(child);
    };
  }

  async create(c: CreateContext): Promise<Launched> {
    // The init's placement in its cgroup would wait out a grace period of the kernel's: started now.
    this.primer.prime();
    const init = await launchInit(
      {
        mode: 'create',
        plan: planFromSpec(c.spec, { cgroups: this.cgroupInfo, seccompBpf: await this.filters.get(c.spec) }),
        stdio: c.io.stdio,
        onSpawn: this.#onSpawn(c.io),
        place: async (pid) => {
          await c.cgroup.addProcess(pid);
          await writeIdMaps(pid, c.spec);
        },
      },
      this.#takeSpare({ mode: 'create', stdio: c.io.stdio }),
    );
    if (init.terminal !== undefined) c.io.takeTerminal(init.terminal);
    return init;
  }

  async exec(c: ExecContext): Promise<Launched> {
    const joinAll: Record<string, string> = {};
    for (const ns of c.spec.linux?.namespaces ?? []) {
      if (NS_FILES[ns.type]) joinAll[ns.type] = `/proc/${c.initPid}/ns/${NS_FILES[ns.type]}`;
    }
    this.primer.prime();
    const launched = await launchInit({
      mode: 'exec',
      plan: planFromSpec(
        { ...c.spec, process: c.process },
        { cgroups: this.cgroupInfo, joinAll, seccompBpf: await this.filters.get(c.spec) },
      ),
      stdio: c.io.stdio,
      onSpawn: this.#onSpawn(c.io),
      place: (pid) => c.cgroup.addProcess(pid),
    });
    if (launched.terminal !== undefined) c.io.takeTerminal(launched.terminal);
    await launched.start();
    return { ...launched, start: async () => undefined };
  }

  async delete(): Promise<void> {}
}

/** An OCI runtime binary (runc, crun) driven through its CLI, its state under the shim's dir. */
export class OciRuntime implements Runtime {
  constructor(
    readonly name: string,
    private readonly root: string,
    private readonly reaper: Reaper,
  ) {}

  /** Runs the runtime; rejects with its error output when it fails. */
  #run(args: string[], io?: ProcessIO): Promise<void> {
    return new Promise((resolve, reject) => {
      const child = spawn(this.name, ['--root', this.root, ...args], {
        stdio: io ? io.stdio : ['ignore', 'ignore', 'pipe'],
      });
      this.reaper.track(child);
      let errText = '';
      if (io) io.connect(child);
      else child.stderr?.on('data', (d) => (errText += d));
      child.once('error', (err) =>
        reject(
          (err as NodeJS.ErrnoException).code === 'ENOENT'
            ? invalidArgument(`runtime "${this.name}" not found in $PATH`)
            : internal(`${this.name}: ${err.message}`),
        ),
      );
      child.once('exit', (code) => {
        if (code === 0) return resolve();
        const line = errText.trim().split('\n').pop() ?? '';
        reject(failedPrecondition(`${this.name} ${args[0]}: ${line || `exit status ${code}`}`));
      });
    });
  }

  async #readLogError(logFile: string): Promise<string | undefined> {
    const text = await readFile(logFile, 'utf8').catch(() => '');
    for (const line of text.trim().split('\n').reverse()) {
      try {
        const rec = JSON.parse(line) as { level?: string; msg?: string };
        if (rec.level === 'error' || rec.level === 'fatal') return rec.msg;
      } catch {
        // A plain line.
      }
    }
    return undefined;
  }

  async #launch(args: string[], io: ProcessIO, pidFile: string, logFile: string): Promise<Launched> {
    if (io.terminal) throw invalidArgument(`a terminal is not supported with runtime "${this.name}"`);
    try {
      await this.#run(['--log', logFile, '--log-format', 'json', ...args], io);
    } catch (err) {
      const why = await this.#readLogError(logFile);
      throw why ? failedPrecondition(`${this.name}: ${why}`) : err;
    } finally {
      await rm(logFile, { force: true });
    }
    const pid = Number((await readFile(pidFile, 'utf8')).trim());
    await rm(pidFile, { force: true });
    return { pid, start: async () => undefined, exited: this.reaper.adopt(pid).then(exitOf) };
  }

  async create(c: CreateContext): Promise<Launched> {
    await writeFile(join(c.bundle, 'config.json'), JSON.stringify(c.spec));
    const pidFile = join(this.root, `${c.id}.pid`);
    const launched = await this.#launch(
      ['create', '--bundle', c.bundle, '--pid-file', pidFile, c.id],
      c.io,
      pidFile,
      join(this.root, `${c.id}.log`),
    );
    return { ...launched, start: () => this.#run(['start', c.id]) };
  }

  async exec(c: ExecContext): Promise<Launched> {
    const procFile = join(this.root, `${c.id}.${c.execId}.process.json`);
    const pidFile = join(this.root, `${c.id}.${c.execId}.pid`);
    await writeFile(procFile, JSON.stringify(c.process));
    try {
      return await this.#launch(
        ['exec', '--detach', '--process', procFile, '--pid-file', pidFile, c.id],
        c.io,
        pidFile,
        join(this.root, `${c.id}.${c.execId}.log`),
      );
    } finally {
      await rm(procFile, { force: true });
    }
  }

  async delete(id: string): Promise<void> {
    await this.#run(['delete', '--force', id]).catch(() => undefined);
  }
}
