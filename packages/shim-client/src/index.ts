/**
 * Starting and talking to shims, for whoever runs containers
 * (container-service, the tests, the benchmarks).
 *
 * startShim spawns `ctr-shim` detached in its own session, with its log as its
 * stdout, and returns once its socket answers; the shim then outlives the
 * caller. connectShim reaches one that is already running.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
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
  /** Settles when the shim process ends (its starter is its parent, and sees it). */
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
  // In place, up to the spawn: a start that boots a shim as it waits on another (a warm spare's refill)
  // forks this process now, while it waits, rather than a few thread-pool trips later, into what comes next.
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const logFile = join(dir, 'shim.log');
  const out = openSync(logFile, 'a', 0o600);
  const [cmd, pre] = shimCommand();
  const args = [...pre, '--id', id, '--root', engine.root, '--state', engine.state, '--instance', engine.instance];
  if (engine.eventsUrl) args.push('--events-url', engine.eventsUrl);
  if (engine.logLevel) args.push('--log-level', engine.logLevel);
  if (opts.warm) args.push('--warm');
  let child: ReturnType<typeof spawn>;
  try {
    child = spawn(cmd, args, {
      detached: true,
      stdio: ['ignore', out, out],
      cwd: dir,
      // V8's code for the shim's bundle, kept by the first shim for the next: compiling it was some
      // 50 ms of CPU of every shim's boot here, which every start pays for (its warm spare's refill).
      // The shim ends if its starter dies before it hosts anything: it learns who that is here.
      env: { ...process.env, NODE_COMPILE_CACHE: paths.compileCache, CTR_SHIM_STARTER: String(process.pid) },
    });
  } finally {
    closeSync(out); // the child has its own
  }
  if (child.pid) {
    // Its first thread now, so the threads Node starts inherit it; the shim sets any it already has.
    if (opts.warm) renice(WARM_NICE, child.pid);
    opts.onSpawn?.(child.pid);
  }
  let exited: number | null | undefined;
  const ended = new Promise<void>((resolve) => {
    child.once('exit', (code) => {
      exited = code;
      resolve();
    });
    child.once('error', () => {
      exited = -1;
      resolve();
    });
  });
  child.unref();
  const deadline = Date.now() + timeoutMs;
  while (!(await socketAlive(socket))) {
    if (exited !== undefined || Date.now() > deadline) {
      if (exited === undefined) child.kill('SIGKILL');
      const tail = (await readFile(logFile, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join(' | ');
      throw internal(`shim ${id} did not start${tail ? `: ${tail}` : ''}`);
    }
    await sleep(5);
  }
  return { id, pid: child.pid as number, socket, client: connectShim(engine, id), exited: ended };
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
