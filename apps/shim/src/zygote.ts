/**
 * The shim zygote (`ctr-shim --zygote`): a shim that loads and compiles
 * itself once and then, on its starter's word, forks the shims it asks for.
 * Each is a copy of a process that is ready but for its own few steps, made
 * in a few ms where a Node boot is some 60 ms of CPU, and it shares the
 * zygote's heap (the shim's code, compiled) copy-on-write instead of
 * building its own: what a running container's shim costs in memory is what
 * it wrote since. So before its first fork it does once what each shim would
 * do at its boot (main.ts: learn the host's cgroup mounts, rehearse a plan,
 * serve a socket and make a logger), and after that it writes as little as
 * it can (forkNode keeps its ranges): pages it writes after a fork become
 * the last forked shim's own.
 *
 * It talks with its starter (container-service's warm shims) on fd 3, a
 * socket pair, one JSON object a line:
 *   starter: {"fork":{"id":"warm-…","warm":true}}
 *   zygote:  {"ready":true} once, then {"id":"warm-…","pid":N} or {"id":…,"error":"…"} per fork,
 *            and {"exit":N} when a shim it forked ends (it reaps its children).
 * It ends when that socket closes or its starter is gone. The shims it
 * forked lead sessions of their own and outlive it, as spawned ones outlive
 * their starter; a warm one that is not bound yet ends with it (its starter).
 *
 * V8 runs --single-threaded here (its starter gives the flag) and the zygote
 * uses no libuv thread pool: a fork keeps only its calling thread.
 */
import { closeSync, mkdirSync, openSync, writeSync } from 'node:fs';
import module from 'node:module';
import { Socket } from 'node:net';
import { dup2, forkNode, getpid, reapChild, setsid } from '@ctr/sys';

let forked = false;
/** True in a shim the zygote forked: its code was the zygote's to compile (and cache). */
export const forkedShim = () => forked;

interface ForkRequest {
  id: string;
  warm?: boolean;
}

/** The shims' own flags: the zygote's, less --zygote. */
function shimArgs(req: ForkRequest): string[] {
  const args = process.argv.slice(2).filter((a) => a !== '--zygote');
  args.push('--id', req.id);
  if (req.warm) args.push('--warm');
  return args;
}

/**
 * A forked shim's command line, as ps and /proc show it: `ctr-shim --id <id>`
 * and the engine's flags, not the zygote's (it is written over the zygote's
 * argv, which is longer). Again when Bind gives the shim its container's id.
 */
export function retitle(id: string): void {
  if (!forked) return;
  const flags = process.argv.slice(2);
  const at = flags.indexOf('--id');
  if (at >= 0) flags.splice(at, 2);
  process.title = ['ctr-shim', '--id', id, ...flags.filter((a) => a !== '--warm')].join(' ');
}

/**
 * Runs the zygote until its starter lets it go. `shim` is the shim's main:
 * a forked child calls it, as the zygote's call returns there.
 */
export function runZygote(shim: () => Promise<void>, shimDir: (id: string) => string): void {
  const starter = Number(process.env.CTR_SHIM_STARTER) || process.ppid;
  const zygote = process.pid; // the zygote's own, which it is never forked from
  const link = new Socket({ fd: 3, readable: true, writable: true });
  const children = new Set<number>();
  const send = (msg: object) => link.write(`${JSON.stringify(msg)}\n`);
  const fail = (err: unknown) => writeSync(2, `ctr-shim zygote: ${(err as Error).message ?? err}\n`);

  const reap = () => {
    for (const pid of children) {
      let status: number | undefined;
      try {
        status = reapChild(pid);
      } catch {
        status = 0; // not ours to wait for any more: gone all the same
      }
      if (status === undefined) continue;
      children.delete(pid);
      send({ exit: pid });
    }
  };
  const end = () => process.exit(0);
  const reaping = setInterval(reap, 5000); // SIGCHLDs coalesce: now and then, a sweep for what they hid
  const watching = setInterval(() => process.ppid !== starter && end(), 1000);
  process.on('SIGCHLD', reap);
  process.on('SIGTERM', end);

  /** In the child: nothing of the zygote's left, then the shim's own boot. */
  const become = (req: ForkRequest) => {
    clearInterval(reaping);
    clearInterval(watching);
    process.removeAllListeners('SIGCHLD');
    process.removeAllListeners('SIGTERM');
    link.removeAllListeners();
    link.destroy(); // the child's copy of fd 3; the zygote's stays open
    Object.defineProperty(process, 'pid', { value: getpid(), enumerable: true, configurable: true });
    setsid();
    const dir = shimDir(req.id);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const log = openSync(`${dir}/shim.log`, 'a', 0o600);
    dup2(log, 1);
    dup2(log, 2);
    closeSync(log);
    process.chdir(dir);
    // The shim ends with its starter until it hosts a task: here that is the zygote.
    process.env.CTR_SHIM_STARTER = String(zygote);
    process.argv = [process.argv[0], process.argv[1], ...shimArgs(req)];
    retitle(req.id);
    void shim();
  };

  let buffered = '';
  link.setEncoding('utf8');
  link.on('data', (chunk: string) => {
    buffered += chunk;
    for (let nl = buffered.indexOf('\n'); nl >= 0 && !forked; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      let req: ForkRequest;
      try {
        req = (JSON.parse(line) as { fork: ForkRequest }).fork;
        if (typeof req?.id !== 'string') throw new Error(`not a fork request: ${line}`);
      } catch (err) {
        fail(err);
        continue;
      }
      let pid: number;
      try {
        pid = forkNode();
      } catch (err) {
        send({ id: req.id, error: (err as Error).message });
        continue;
      }
      if (pid === 0) {
        forked = true; // the rest of this chunk is the zygote's
        become(req);
        return;
      }
      children.add(pid);
      send({ id: req.id, pid });
    }
  });
  link.on('end', end);
  link.on('close', end);
  link.on('error', (err: NodeJS.ErrnoException) => {
    // EPIPE, ECONNRESET: its starter went, which ends it anyway.
    if (err.code !== 'EPIPE' && err.code !== 'ECONNRESET') fail(err);
    end();
  });
  // Its code cache on disk for the next zygote (and spawned shims) now, not at its exit.
  module.flushCompileCache?.();
  send({ ready: true });
}
