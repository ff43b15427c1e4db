/**
 * Runs native ctr-init and walks its handshake (native/src/protocol.h):
 * plan on fd 3, the container process's socket on fd 4, ctr-init's own on
 * fd 5. The caller places the new process (cgroups, id maps) between
 * CHILD_PID and PLACED, and decides when to start it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, existsSync } from 'node:fs';
import type { Readable, Writable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { CtrError } from '@ctr/common/errors';
import { pidfdGetfd, pidfdOpen } from '@ctr/sys';
import { decodeSync, encodeSync, STAGE_EXEC, Stage, SYNC_MSG_SIZE, type SyncMessage, SyncType } from './protocol.js';

/** native/build/ctr-init beside the apps (apps/shim/dist/init → ../../../../native/build). */
export function ctrInitPath(): string {
  const fromEnv = process.env.CTR_INIT;
  if (fromEnv) return fromEnv;
  const p = fileURLToPath(new URL('../../../../native/build/ctr-init', import.meta.url));
  if (!existsSync(p)) throw new Error(`ctr-init not found at ${p}: run nx run native:build`);
  return p;
}

/** A failure reported by ctr-init, with its stage and errno. */
export class InitError extends CtrError {
  constructor(
    readonly stage: number,
    readonly errno: number,
    detail: string,
  ) {
    super(stage === STAGE_EXEC ? 'FailedPrecondition' : 'Internal', InitError.describe(stage, errno, detail));
  }

  static describe(stage: number, errno: number, detail: string): string {
    const reason = errnoText(errno);
    if (stage === STAGE_EXEC) {
      const file = detail.replace(/^exec /, '');
      if (errno === 2) return `exec: "${file}": executable file not found in $PATH`;
      if (errno === 13) return `exec: "${file}": permission denied`;
    }
    return `${Stage[stage] ?? `stage ${stage}`}: ${detail}: ${reason}`;
  }

  /** docker's codes for a command that cannot run: 127 not found, 126 not executable. */
  get exitCode(): number {
    if (this.stage !== STAGE_EXEC) return 125;
    return this.errno === 2 ? 127 : 126;
  }
}

const ERRNO_TEXT: Record<number, string> = {
  1: 'operation not permitted',
  2: 'no such file or directory',
  13: 'permission denied',
  16: 'device or resource busy',
  17: 'file exists',
  20: 'not a directory',
  21: 'is a directory',
  22: 'invalid argument',
  28: 'no space left on device',
  40: 'too many levels of symbolic links',
  71: 'protocol error',
};
const errnoText = (errno: number) => ERRNO_TEXT[errno] ?? `errno ${errno}`;

/** Reads fixed-size sync messages from a stream; resolves undefined at EOF. */
class SyncReader {
  #buf = Buffer.alloc(0);
  #waiting: ((m: SyncMessage | undefined) => void)[] = [];
  #ended = false;

  constructor(stream: Readable) {
    stream.on('data', (chunk: Buffer) => {
      this.#buf = Buffer.concat([this.#buf, chunk]);
      this.#drain();
    });
    const end = () => {
      this.#ended = true;
      this.#drain();
    };
    stream.on('end', end);
    stream.on('close', end);
    stream.on('error', end);
  }

  #drain() {
    while (this.#waiting.length && this.#buf.length >= SYNC_MSG_SIZE) {
      const msg = decodeSync(this.#buf.subarray(0, SYNC_MSG_SIZE));
      this.#buf = this.#buf.subarray(SYNC_MSG_SIZE);
      this.#waiting.shift()?.(msg);
    }
    if (this.#ended) while (this.#waiting.length) this.#waiting.shift()?.(undefined);
  }

  next(): Promise<SyncMessage | undefined> {
    return new Promise((resolve) => {
      this.#waiting.push(resolve);
      this.#drain();
    });
  }
}

export type Stdio = 'ignore' | 'pipe' | 'inherit' | number;

export interface LaunchOptions {
  mode: 'create' | 'exec';
  plan: Buffer;
  stdio: [Stdio, Stdio, Stdio];
  /** Cgroups and id maps for the new process, before it does anything. */
  place?(pid: number): Promise<void>;
  /** Called once ctr-init is spawned, to take its stdio. */
  onSpawn?(child: ChildProcess): void;
}

export interface Exit {
  /** The raw wait status of the container process. */
  status: number;
  /** What docker reports: the exit code, or 128 + the signal. */
  code: number;
  signal?: number;
  at: Date;
}

/** A raw wait status as docker reports it: the exit code, or 128 + the signal. */
export function exitOf(status: number): Exit {
  const sig = status & 0x7f;
  return sig
    ? { status, code: 128 + sig, signal: sig, at: new Date() }
    : { status, code: (status >> 8) & 0xff, at: new Date() };
}

export interface InitProcess {
  /** The container's process, in the shim's pid namespace. */
  readonly pid: number;
  /** ctr-init, which waits for it. */
  readonly waiter: ChildProcess;
  /** The pty master the container made, when the plan asked for a terminal (an fd of the shim's). */
  readonly terminal?: number;
  /** Execs the user's command; rejects with InitError when it cannot run. */
  start(): Promise<void>;
  /** Resolves when the container process has exited. */
  readonly exited: Promise<Exit>;
}

function failure(m: SyncMessage | undefined, what: string): Error {
  if (m?.type === SyncType.ERROR) return new InitError(m.stage, m.value, m.text);
  return new Error(`ctr-init: ${what}`);
}

/** Copies an fd out of another process (it stays open there until that process closes or execs). */
function takeFd(pid: number, fd: number): number {
  const pidfd = pidfdOpen(pid);
  try {
    return pidfdGetfd(pidfd, fd);
  } finally {
    closeSync(pidfd);
  }
}

/** ctr-init spawned, waiting for its plan: what launchInit goes on with. */
export interface SpawnedInit {
  readonly mode: LaunchOptions['mode'];
  readonly stdio: readonly [Stdio, Stdio, Stdio];
  readonly child: ChildProcess;
}

/** Spawns ctr-init in `mode` with the container's stdio (and the three handshake pipes); it waits for its plan. */
export function spawnInit(mode: LaunchOptions['mode'], stdio: [Stdio, Stdio, Stdio]): SpawnedInit {
  const child = spawn(ctrInitPath(), [mode], { stdio: [...stdio, 'pipe', 'pipe', 'pipe'], detached: false });
  // Told again to whoever launches it; a spare's (ENOENT) must not be thrown meanwhile.
  child.on('error', () => undefined);
  return { mode, stdio, child };
}

/** Whether `spawned` was made for a launch like `opts` and still waits for a plan. */
export function fitsLaunch(spawned: SpawnedInit, opts: Pick<LaunchOptions, 'mode' | 'stdio'>): boolean {
  const { child } = spawned;
  return (
    spawned.mode === opts.mode &&
    spawned.stdio.every((s, i) => s === opts.stdio[i]) &&
    child.pid !== undefined &&
    child.exitCode === null &&
    child.signalCode === null
  );
}

/**
 * Starts ctr-init (or takes `spawned`, one that fits) and runs the handshake
 * up to READY (the process is set up and waits to exec).
 */
export async function launchInit(opts: LaunchOptions, spawned?: SpawnedInit): Promise<InitProcess> {
  const waiter = (spawned ?? spawnInit(opts.mode, opts.stdio)).child;
  opts.onSpawn?.(waiter);
  const fds = waiter.stdio as unknown as (Readable & Writable)[];
  const planPipe: Writable = fds[3];
  const initSock = fds[4];
  const parentReader = new SyncReader(fds[5]);
  const initReader = new SyncReader(initSock);
  // A spawn that failed (ENOENT) emits 'error' on its next tick: a spare's did so long ago, and its missing pid tells.
  const spawnError = new Promise<never>((_, reject) => {
    waiter.once('error', reject);
    if (spawned && waiter.pid === undefined) reject(new Error('ctr-init could not be spawned'));
  });
  const kill = () => {
    if (waiter.exitCode === null) waiter.kill('SIGKILL');
  };

  planPipe.on('error', () => undefined);
  planPipe.end(opts.plan);
  const first = await Promise.race([parentReader.next(), spawnError]);
  if (first?.type !== SyncType.CHILD_PID) {
    kill();
    throw failure(first, 'no child pid');
  }
  const pid = first.value;
  // From here on, ctr-init reports the child's exit on its own socket.
  const exited = (async (): Promise<Exit> => {
    const m = await parentReader.next();
    const exitCode = await new Promise<number | null>((resolve) =>
      waiter.exitCode !== null ? resolve(waiter.exitCode) : waiter.once('exit', (c) => resolve(c)),
    );
    return exitOf(m?.type === SyncType.EXITED ? m.value : ((exitCode ?? 255) & 0xff) << 8);
  })();
  let terminal: number | undefined;
  try {
    await opts.place?.(pid);
    initSock.write(encodeSync(SyncType.PLACED));
    const ready = await initReader.next();
    if (ready?.type !== SyncType.READY) throw failure(ready, 'the container process ended before it was ready');
    if (ready.value > 0) terminal = takeFd(pid, ready.value);
  } catch (err) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // Already gone: it failed on its own and reported why.
    }
    await exited;
    throw err;
  }
  return {
    pid,
    waiter,
    exited,
    terminal,
    async start() {
      initSock.write(encodeSync(SyncType.START));
      // EOF means execve succeeded (the socket is close-on-exec); a message means it failed.
      const m = await initReader.next();
      initSock.destroy();
      if (m) throw failure(m, 'unexpected message after start');
    },
  };
}
