/** Small helpers every suite needs: polling, commands, random names, free ports. */
import { execFile, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root (packages/testkit/dist → ../../..). */
export const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls until fn returns a truthy value; throws with `what` after the timeout. */
export async function waitFor<T>(
  fn: () => T | Promise<T>,
  what: string,
  { timeoutMs = 10_000, intervalMs = 25 } = {},
): Promise<NonNullable<T>> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) {
      throw new Error(
        `timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`,
      );
    }
    await sleep(intervalMs);
  }
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion without a shell; never throws for a non-zero exit. */
export function run(
  command: string,
  args: string[],
  opts: { input?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number; cwd?: string } = {},
): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args, {
      env: opts.env ?? process.env,
      cwd: opts.cwd,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = opts.timeoutMs
      ? setTimeout(() => {
          child.kill('SIGKILL');
          reject(new Error(`${command} ${args.join(' ')} timed out after ${opts.timeoutMs} ms`));
        }, opts.timeoutMs)
      : undefined;
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolvePromise({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
    // A child that exits without reading its stdin must not fail the caller.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** Runs a command and throws with its stderr when it fails. */
export async function mustRun(command: string, args: string[], opts: Parameters<typeof run>[2] = {}): Promise<string> {
  const r = await run(command, args, opts);
  if (r.code !== 0)
    throw new Error(`${command} ${args.join(' ')} exited ${r.code}: ${r.stderr.trim() || r.stdout.trim()}`);
  return r.stdout;
}

/** mustRun with its wall time from start to exit, as a benchmark times a CLI. */
export async function timedRun(
  command: string,
  args: string[],
  opts: Parameters<typeof run>[2] = {},
): Promise<{ ms: number; stdout: string }> {
  const t0 = performance.now();
  const stdout = await mustRun(command, args, opts);
  return { ms: performance.now() - t0, stdout };
}

/** The median of some figures (the upper middle one for an even count). */
export const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

export function execText(command: string, args: string[]): Promise<string> {
  return new Promise((res) => execFile(command, args, (_err, stdout) => res(stdout ?? '')));
}

/** A fresh instance name: short enough for link names, unique enough for a shared host. */
export function randomInstance(prefix = 't'): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return prefix + [...randomBytes(7)].map((b) => alphabet[b % alphabet.length]).join('');
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.once('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => res(port));
    });
  });
}

/** Sends a signal to a pid, ignoring a process that is already gone. */
export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/** Whether a process with this pid exists (signal 0; a zombie still counts). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * A gate for containers that must exit at a moment the test picks: the
 * directory to bind at /gate, the command that waits for /gate/go and exits
 * with `code`, and open() to let every such container go.
 */
export async function exitGate(dir: string) {
  await mkdir(dir, { recursive: true });
  return {
    volume: `${dir}:/gate`,
    command: (code: number) => ['sh', '-c', `while [ ! -e /gate/go ]; do sleep 0.1; done; exit ${code}`],
    open: () => writeFile(join(dir, 'go'), ''),
  };
}
