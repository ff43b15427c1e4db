/**
 * Starting and talking to shims, for whoever runs containers
 * (container-service, the tests, the benchmarks).
 *
 * startShim spawns `ctr-shim` detached in its own session, with its log as its
 * stdout, and returns once its socket answers; the shim then outlives the
 * caller. connectShim reaches one that is already running.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ShimService, Status } from '@ctr/api/shim/v1/shim';
import { layout } from '@ctr/common/config';
import { renice } from '@ctr/common/priority';
import { failedPrecondition, internal, isNotFound } from '@ctr/common/errors';
import { type ApiClient, dial, socketAlive } from '@ctr/common/grpc';

export type ShimClient = ApiClient<typeof ShimService>;

export interface ShimEngine {
  root: string;
  state: string;
  instance: string;
  /** NATS url; empty: the embedded server ctrd recorded. */
  eventsUrl?: string;
  logLevel?: string;
}

export interface RunningShim {
  id: string;
  pid: number;
  socket: string;
  client: ShimClient;
  /** Settles when the shim process ends (its parent, its starter or their zygote, sees it). */
  exited: Promise<void>;
}

/**
 * How the shim is run: CTR_SHIM (a JS entry or an executable), else the
 * shim's bundle (apps/shim/dist/bundle/main.cjs, which boots in about half the
 * time of its modules loaded one by one) or its modules, on this Node.
 */
function shimCommand(): [string, string[]] {
  const fromEnv = process.env.CTR_SHIM;
  if (fromEnv && !/\.c?js$/.test(fromEnv)) return [fromEnv, []];
  const dist = (p: string) => fileURLToPath(new URL(`../../../apps/shim/dist/${p}`, import.meta.url));
  const main = fromEnv ?? [dist('bundle/main.cjs'), dist('main.js')].find((p) => existsSync(p));
  if (!main || !existsSync(main))
    throw internal(`the shim is not built (${main ?? dist('main.js')}): run nx run shim:build`);
  // A lean heap: a shim holds little, and a few MB of young generation is plenty.
  return [process.execPath, ['--max-semi-space-size=1', '--max-old-space-size=64', main]];
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function connectShim(engine: Pick<ShimEngine, 'root' | 'state'>, id: string): ShimClient {
  return dial(ShimService, layout(engine).shimSocket(id), 'ctr-shim');
}

export interface StartShimOptions {
  timeoutMs?: number;
  /**
   * A warm shim, started ahead of its container: until it is bound (Bind) it
   * lives only as long as the process that started it.
   */
  warm?: boolean;
  /** Fork the shim from this zygote rather than boot a Node of its own. */
  zygote?: ShimZygote;
  /** Called with the shim's pid as soon as it is spawned, before it serves. */
  onSpawn?: (pid: number) => void;
}

/**
 * A warm shim boots at this nice value (and goes to 0 when bound): its boot,
 * some 100 ms of CPU that every start sets off, gives way to the starts and
 * commands that run meanwhile instead of slowing them down.
 */
export const WARM_NICE = 10;

export async function startShim(engine: ShimEngine, id: string, opts: StartShimOptions = {}): Promise<RunningShim> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  const paths = layout(engine);
  const dir = paths.shimDir(id);
  const socket = paths.shimSocket(id);
  if (socket.length > 107) throw failedPrecondition(`the shim socket path is too long for a unix socket: ${socket}`);
  const logFile = join(dir, 'shim.log');
  let pid: number;
  let exited: Promise<void>;
  let done = false;
  if (opts.zygote) {
    const forked = await opts.zygote.fork(id, Boolean(opts.warm));
    pid = forked.pid;
    exited = forked.exited;
    opts.onSpawn?.(pid);
  } else {
    const child = spawnShim(engine, id, dir, logFile, opts);
    pid = child.pid;
    exited = child.exited;
  }
  void exited.then(() => {
    done = true;
  });
  const deadline = Date.now() + timeoutMs;
  while (!(await socketAlive(socket))) {
    if (done || Date.now() > deadline) {
      if (!done) signalQuietly(pid, 'SIGKILL');
      const tail = (await readFile(logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join(' | ');
      throw internal(`shim ${id} did not start${tail ? `: ${tail}` : ''}`);
    }
    await sleep(5);
  }
  return { id, pid, socket, client: connectShim(engine, id), exited };
}

function signalQuietly(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // gone already
  }
}

/** A shim of its own Node: spawned detached (a session of its own), its log its stdout. */
function spawnShim(
  engine: ShimEngine,
  id: string,
  dir: string,
  logFile: string,
  opts: StartShimOptions,
): { pid: number; exited: Promise<void> } {
  // In place, up to the spawn: a start that boots a shim as it waits on another (a warm spare's refill)
  // forks this process now, while it waits, rather than a few thread-pool trips later, into what comes next.
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const out = openSync(logFile, 'a', 0o600);
  const [cmd, pre] = shimCommand();
  const args = [...pre, '--id', id, ...engineFlags(engine)];
  if (opts.warm) args.push('--warm');
  let child: ReturnType<typeof spawn>;
  try {
    child = spawn(cmd, args, {
      detached: true,
      stdio: ['ignore', out, out],
      cwd: dir,
      env: shimEnv(engine),
    });
  } finally {
    closeSync(out); // the child has its own
  }
  if (child.pid) {
    // Its first thread now, so the threads Node starts inherit it; the shim sets any it already has.
    if (opts.warm) renice(WARM_NICE, child.pid);
    opts.onSpawn?.(child.pid);
  }
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', () => resolve());
  });
  child.unref();
  return { pid: child.pid ?? 0, exited };
}

/** The flags every shim (and the zygote) is given: the engine's. */
function engineFlags(engine: ShimEngine): string[] {
  const args = ['--root', engine.root, '--state', engine.state, '--instance', engine.instance];
  if (engine.eventsUrl) args.push('--events-url', engine.eventsUrl);
  if (engine.logLevel) args.push('--log-level', engine.logLevel);
  return args;
}

function shimEnv(engine: ShimEngine): NodeJS.ProcessEnv {
  // V8's code for the shim's bundle, kept by the first shim for the next: compiling it was some
  // 50 ms of CPU of every shim's boot here, which every start pays for (its warm spare's refill).
  // The shim ends if its starter dies before it hosts anything: it learns who that is here.
  return {
    ...process.env,
    NODE_COMPILE_CACHE: layout(engine).compileCache,
    CTR_SHIM_STARTER: String(process.pid),
  };
}

/**
 * A shim zygote (apps/shim's zygote.ts): one Node boot, then shims forked
 * from it in a few ms each, sharing its heap. It lives as long as this
 * process keeps it (close(), or this process's death, ends it); the shims
 * it forked outlive it. Its own errors go to this process's stderr.
 */
export class ShimZygote {
  readonly pid: number;
  #link: Socket;
  #pending = new Map<string, { resolve: (pid: number) => void; reject: (err: Error) => void }>();
  #exits = new Map<number, () => void>();
  #gone = false;
  readonly ended: Promise<void>;

  private constructor(child: ChildProcess) {
    this.pid = child.pid ?? 0;
    this.#link = child.stdio[3] as Socket;
    this.ended = new Promise<void>((resolve) => {
      const gone = () => {
        if (this.#gone) return;
        this.#gone = true;
        for (const p of this.#pending.values()) p.reject(internal('the shim zygote ended'));
        this.#pending.clear();
        // Its warm shims end with it (it is their starter); the others live on, unwatched from here.
        for (const exit of this.#exits.values()) exit();
        this.#exits.clear();
        resolve();
      };
      child.once('exit', gone);
      child.once('error', gone);
    });
  }

  /** Boots one; rejects if it is not ready in `timeoutMs`. */
  static async start(engine: ShimEngine, timeoutMs = 10_000): Promise<ShimZygote> {
    const [cmd, pre] = shimCommand();
    if (cmd !== process.execPath) throw failedPrecondition('CTR_SHIM names an executable: it has no zygote');
    // --single-threaded: V8 then posts no work to helper threads, which a forked copy would not have.
    // --no-lazy: every function of the shim compiled as the zygote loads it (and kept in its code
    // cache), not in each forked shim on first use: 9 ms less CPU a shim here, and bytecode they share.
    // --minor-ms: the young generation is marked and swept in place, not copied between semi-spaces,
    // so a forked shim's minor GCs copy fewer of the pages it shares: some 0.7 MB less PSS a shim.
    const child = spawn(
      cmd,
      ['--single-threaded', '--no-lazy', '--minor-ms', ...pre, '--zygote', ...engineFlags(engine)],
      {
        detached: true,
        stdio: ['ignore', 'ignore', 'inherit', 'pipe'],
        env: shimEnv(engine),
      },
    );
    if (child.pid) renice(WARM_NICE, child.pid);
    const z = new ShimZygote(child);
    const ready = new Promise<void>((resolve, reject) => {
      z.#onReady = resolve;
      void z.ended.then(() => reject(internal('the shim zygote ended as it booted')));
      setTimeout(() => reject(internal(`the shim zygote was not ready in ${timeoutMs} ms`)), timeoutMs).unref();
    });
    z.#read();
    child.unref();
    try {
      await ready;
    } catch (err) {
      z.close();
      throw err;
    }
    z.#link.unref(); // kept in the loop only while a fork is asked for (fork())
    return z;
  }

  #onReady: () => void = () => undefined;

  #read(): void {
    createInterface({ input: this.#link, crlfDelay: Number.POSITIVE_INFINITY }).on('line', (line) => {
      let msg: { ready?: boolean; id?: string; pid?: number; error?: string; exit?: number };
      try {
        msg = JSON.parse(line);
      } catch {
        return;
      }
      if (msg.ready) this.#onReady();
      else if (msg.exit !== undefined) {
        this.#exits.get(msg.exit)?.();
        this.#exits.delete(msg.exit);
      } else if (msg.id !== undefined) {
        const p = this.#pending.get(msg.id);
        this.#pending.delete(msg.id);
        if (msg.pid) p?.resolve(msg.pid);
        else p?.reject(internal(`the shim zygote could not fork ${msg.id}: ${msg.error ?? 'no pid'}`));
      }
    });
    this.#link.on('error', () => this.close());
  }

  /** A new shim `id`, forked: its pid, and when it ends. */
  async fork(id: string, warm: boolean): Promise<{ pid: number; exited: Promise<void> }> {
    if (this.#gone) throw internal('the shim zygote has ended');
    if (this.#pending.has(id)) throw failedPrecondition(`shim ${id} is being forked already`);
    this.#link.ref();
    const pid = await new Promise<number>((resolve, reject) => {
      this.#pending.set(id, { resolve, reject });
      this.#link.write(`${JSON.stringify({ fork: { id, warm } })}\n`);
    }).finally(() => {
      if (!this.#pending.size) this.#link.unref();
    });
    const exited = new Promise<void>((resolve) => this.#exits.set(pid, resolve));
    return { pid, exited };
  }

  /** Ends the zygote (not the shims it forked). */
  close(): void {
    this.#link.destroy();
    if (!this.#gone) signalQuietly(this.pid, 'SIGTERM');
  }
}

/**
 * Once a shim was told to shut down (or found dead): waits for its socket to
 * go (a shim takes it and its directory away as it answers Shutdown; one of
 * an earlier build only as it exits), then removes its directory, which a
 * shim that died leaves behind.
 */
export async function removeShimDir(engine: Pick<ShimEngine, 'root' | 'state'>, name: string): Promise<void> {
  const paths = layout(engine);
  for (let i = 0; i < 500 && existsSync(paths.shimSocket(name)); i++) await sleep(2);
  await rm(paths.shimDir(name), { recursive: true, force: true });
}

/** What a shim writes (and syncs) when a task's init exits, before it tells anyone. */
export interface ExitRecord {
  pid: number;
  exitStatus: number;
  exitedAt: string;
  oomKilled: boolean;
}

/** Where a task's exit record lives: the directory of the shim that hosts it. */
export const exitRecordPath = (shimDir: string, id: string) => join(shimDir, `${id}.exit.json`);

/** The exit record of task `id` in the shim found at `shims/<id>` (alive or not), if it was written. */
export async function readExitRecord(
  engine: Pick<ShimEngine, 'root' | 'state'>,
  id: string,
): Promise<ExitRecord | undefined> {
  try {
    const r = JSON.parse(await readFile(exitRecordPath(layout(engine).shimDir(id), id), 'utf8')) as ExitRecord;
    return typeof r.exitStatus === 'number' ? r : undefined;
  } catch {
    return undefined;
  }
}

export interface StopOptions {
  /** The container's stop signal (docker's default SIGTERM). */
  signal?: number;
  /** How long to wait before SIGKILL, in ms (docker's default 10 s). */
  timeoutMs?: number;
}

/**
 * docker stop: the stop signal, then SIGKILL once the timeout passes. Resolves
 * with the exit; a task that has already stopped just reports its exit.
 */
export async function stopTask(client: ShimClient, id: string, opts: StopOptions = {}) {
  const state = await client.state({ id, execId: '' });
  if (state.status !== Status.STATUS_STOPPED) {
    // Its exit is the one asked for before the kill: the task may be deleted (its exit handled) by the
    // time a second Wait would reach the shim.
    const waiting = client.wait({ id, execId: '' }, { timeoutMs: 24 * 3600_000 });
    try {
      await client.kill({ id, execId: '', signal: opts.signal ?? 15, all: false });
      const timeout = opts.timeoutMs ?? 10_000;
      let timer: NodeJS.Timeout | undefined;
      const done = await Promise.race([
        waiting.then(() => true),
        new Promise<boolean>((resolve) => {
          timer = setTimeout(() => resolve(false), timeout);
        }),
      ]);
      clearTimeout(timer);
      if (!done) await client.kill({ id, execId: '', signal: 9, all: true });
    } catch (err) {
      // It stopped on its own meanwhile.
      if (!isNotFound(err) && !/not running/.test((err as Error).message)) throw err;
    }
    return await waiting;
  }
  return client.wait({ id, execId: '' });
}
