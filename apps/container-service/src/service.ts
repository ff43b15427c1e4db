/** container-service's gRPC API: ctr.containers.v1 Containers, Tasks and Volumes. */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { promisify } from 'node:util';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import {
  type AttachRequest,
  type AttachResponse,
  ContainersService,
  type CopyInRequest,
  type TaskStats,
  TasksService,
  VolumesService,
  WaitCondition,
  type WaitTaskResponse,
} from '@ctr/api/containers/v1/containers';
import type { AttachResponse as ShimAttachResponse } from '@ctr/api/shim/v1/shim';
import { failedPrecondition, fromGrpcError, invalidArgument, unimplemented } from '@ctr/common/errors';
import { implement, type ServiceBinding } from '@ctr/common/grpc';
import { readLogEntries } from '@ctr/common/jsonlog';
import type { Logger } from '@ctr/common/log';
import type { ShimClient } from '@ctr/shim-client';
import { type Containers, parseSignal } from './containers.js';
import { copyIn, copyOut, statPath } from './copy.js';
import type { ContainerRecord } from './store.js';
import type { Volumes } from './volumes.js';
import { matchLabel } from './volumes.js';

const run = promisify(execFile);

/** docker ps filters: id, name, label, status, ancestor, exited. */
export function matchesFilters(rec: ContainerRecord, filters: string[]): boolean {
  const c = rec.container;
  for (const f of filters) {
    const eq = f.indexOf('=');
    if (eq < 0) throw invalidArgument(`bad format of filter (expected name=value): ${f}`);
    const key = f.slice(0, eq);
    const value = f.slice(eq + 1);
    switch (key) {
      case 'id':
        if (!c.id.startsWith(value)) return false;
        break;
      case 'name':
        if (!new RegExp(value).test(c.name)) return false;
        break;
      case 'label':
        if (!matchLabel(c.config?.labels ?? {}, value)) return false;
        break;
      case 'status':
        if ((c.state?.status ?? 'created') !== value) return false;
        break;
      case 'exited':
        if (c.state?.status !== 'exited' || c.state.exitCode !== Number(value)) return false;
        break;
      case 'ancestor':
        if (c.image !== value && !c.imageId.startsWith(value) && !c.imageId.startsWith(`sha256:${value}`)) return false;
        break;
      default:
        throw invalidArgument(`invalid filter '${key}'`);
    }
  }
  return true;
}

async function netBytes(pid: number): Promise<{ rx: bigint; tx: bigint }> {
  const text = await readFile(`/proc/${pid}/net/dev`, 'utf8').catch(() => '');
  let rx = 0n;
  let tx = 0n;
  for (const line of text.split('\n').slice(2)) {
    const [name, rest] = line.split(':');
    if (!rest || name.trim() === 'lo') continue;
    const f = rest.trim().split(/\s+/);
    rx += BigInt(f[0]);
    tx += BigInt(f[8]);
  }
  return { rx, tx };
}

async function systemCpuNanos(): Promise<bigint> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0];
  const ticks = line
    .split(/\s+/)
    .slice(1, 8)
    .reduce((a, b) => a + BigInt(b || 0), 0n);
  return (ticks * 1_000_000_000n) / 100n;
}

/** Every handler waits for the start-up reconcile (a call never sees containers before their shims are re-read). */
function gated<T extends object>(handlers: T, ready: Promise<void>): T {
  const out: Record<string, unknown> = {};
  for (const [name, h] of Object.entries(handlers)) {
    out[name] = (...args: unknown[]) => ready.then(() => (h as (...a: unknown[]) => unknown)(...args));
  }
  return out as T;
}

export function containersApi(m: Containers, volumes: Volumes, log: Logger, ready: Promise<void>): ServiceBinding[] {
  const stats = async (rec: ContainerRecord, shim: ShimClient): Promise<TaskStats> => {
    const id = rec.container.id;
    const [s, net, system] = await Promise.all([
      shim.stats({ id }),
      netBytes(rec.container.state?.pid ?? 0),
      systemCpuNanos(),
    ]);
    return {
      containerId: id,
      name: rec.container.name,
      readAt: new Date(),
      cpuUsageNanos: s.cpuUsageNanos,
      systemCpuUsageNanos: system,
      onlineCpus: cpus().length,
      memoryUsage: s.memoryUsage,
      // No limit: the host's memory, as docker shows it.
      memoryLimit: s.memoryLimit > 0n && s.memoryLimit < BigInt(totalmem()) ? s.memoryLimit : BigInt(totalmem()),
      memoryCache: s.memoryCache,
      pidsCurrent: s.pidsCurrent,
      pidsLimit: s.pidsLimit,
      netRxBytes: net.rx,
      netTxBytes: net.tx,
      blockReadBytes: 0n,
      blockWriteBytes: 0n,
    };
  };

  const report = (err: unknown, method: string) => log.error({ err, method }, 'call failed');

  return [
    {
      definition: ContainersService,
      implementation: implement(
        ContainersService,
        gated(
          {
            create: async ({ name, config, start }) => {
              if (!config) throw invalidArgument('a container needs a config');
              return start ? m.run(name, config) : m.create(name, config);
            },
            get: async ({ ref }) => m.find(ref).container,
            list: async ({ all, filters }) => {
              const recs = m
                .list()
                .filter((r) => all || ['running', 'paused', 'restarting'].includes(r.container.state?.status ?? ''))
                .filter((r) => matchesFilters(r, filters))
                .sort((a, b) => (b.container.createdAt?.getTime() ?? 0) - (a.container.createdAt?.getTime() ?? 0));
              return { containers: recs.map((r) => r.container) };
            },
            rename: async ({ ref, name }) => m.rename(ref, name),
            delete: async ({ ref, force, removeVolumes }) => {
              await m.remove(ref, { force, volumes: removeVolumes });
              return {};
            },
            prune: async () => {
              const { deleted, reclaimed } = await m.prune();
              return { deleted, spaceReclaimed: BigInt(reclaimed) };
            },
            update: async () => {
              throw unimplemented('update is not supported yet');
            },
            commit: async ({ ref, repository, author, comment, pause, changes }) => ({
              imageId: await m.commit(ref, { repository, author, comment, pause, changes }),
            }),
            statPath: async ({ ref, path, followLink }) =>
              m.withRoot(ref, async (root, rec) => statPath(root, path, followLink, rec.container.name)),
            copyOut: async ({ ref, path, as, followLink }, call) => {
              await m.withRoot(ref, async (root, rec) => {
                let buf: Buffer[] = [];
                let size = 0;
                const flush = async () => {
                  if (!size && buf.length === 0) return;
                  const data = Buffer.concat(buf);
                  buf = [];
                  size = 0;
                  if (!call.write({ data })) await new Promise((r) => call.once('drain', r));
                };
                for await (const chunk of copyOut(root, path, as, followLink, rec.container.name)) {
                  if (call.cancelled) return;
                  buf.push(chunk);
                  size += chunk.length;
                  if (size >= 1 << 20) await flush();
                }
                await flush();
              });
            },
            copyIn: async (call) => {
              // Iterated by hand: leaving a for-await early would destroy the call before the error status goes out.
              const it = (call as AsyncIterable<CopyInRequest>)[Symbol.asyncIterator]();
              const first = await it.next();
              if (first.done || first.value.part?.$case !== 'header')
                throw invalidArgument('a copy starts with its header');
              const { ref, path } = first.value.part.value;
              async function* chunks(): AsyncGenerator<Buffer> {
                for (let n = await it.next(); !n.done; n = await it.next()) {
                  if (n.value.part?.$case !== 'chunk') throw invalidArgument('a copy sends its header once');
                  yield Buffer.from(n.value.part.value);
                }
              }
              await m.withRoot(ref, async (root, rec) => {
                if (rec.container.config?.readOnlyRootfs)
                  throw failedPrecondition('container rootfs is marked read-only');
                await copyIn(root, path, chunks(), rec.container.name);
              });
              return {};
            },
          },
          ready,
        ),
        report,
      ),
    },
    {
      definition: TasksService,
      implementation: implement(
        TasksService,
        gated(
          {
            start: async ({ ref }) => ({ pid: await m.start(ref) }),
            stop: async ({ ref, timeout, signal }) => {
              await m.stop(ref, { timeout, signal });
              return {};
            },
            restart: async ({ ref, timeout }) => ({ pid: await m.restart(ref, timeout) }),
            kill: async ({ ref, signal, execId, all }) => {
              if (execId || all) {
                const { rec, shim } = await m.shimOf(ref);
                await shim.kill({ id: rec.container.id, execId, signal: parseSignal(signal, 9), all });
              } else await m.kill(ref, signal);
              return {};
            },
            pause: async ({ ref }) => {
              await m.pause(ref);
              return {};
            },
            resume: async ({ ref }) => {
              await m.resume(ref);
              return {};
            },
            wait: async ({ ref, condition }) => {
              const cond =
                condition === WaitCondition.WAIT_CONDITION_NEXT_EXIT
                  ? 'next-exit'
                  : condition === WaitCondition.WAIT_CONDITION_REMOVED
                    ? 'removed'
                    : 'not-running';
              const st = await m.wait(ref, cond);
              return { exitCode: st.exitCode, exitedAt: st.finishedAt, error: st.error };
            },
            exec: async (req) => {
              const { rec, shim } = await m.shimOf(req.ref);
              const id = rec.container.id;
              const spec = await m.execProcess(rec, req);
              const execId = randomBytes(16).toString('hex');
              await shim.exec({
                id,
                execId,
                terminal: req.tty,
                stdin: req.stdin,
                spec: Buffer.from(JSON.stringify(spec)),
              });
              let pid = 0;
              if (req.detach) pid = (await shim.start({ id, execId })).pid;
              return { execId, pid };
            },
            resizePty: async ({ ref, execId, width, height }) => {
              const { rec, shim } = await m.shimOf(ref);
              await shim.resizePty({ id: rec.container.id, execId, width, height });
              return {};
            },
            attach: (call) => attach(m, call),
            logs: async (req, call) => {
              const rec = m.find(req.ref);
              const c = rec.container;
              const since = req.since?.getTime() ?? 0;
              const until = req.until?.getTime() ?? Number.POSITIVE_INFINITY;
              const wanted = (stream: string) =>
                (!req.stdout && !req.stderr) || (stream === 'stdout' ? req.stdout : req.stderr);
              const live = req.follow && ['running', 'paused'].includes(c.state?.status ?? '');
              const shim = live
                ? await m
                    .shimOf(c.id)
                    .then((s) => s.shim)
                    .catch(() => undefined)
                : undefined;
              if (shim) {
                // The shim writes the log: it follows it without a gap, to the process's end.
                const tail = req.tail < 0n ? 0n : req.tail === 0n ? -1n : req.tail;
                const stream = shim.logs(
                  { id: c.id, follow: true, tail, since: req.since },
                  { timeoutMs: 365 * 86400_000 },
                );
                call.on('cancelled', () => stream.cancel());
                await new Promise<void>((resolve, reject) => {
                  stream.on('data', (l: { stream: string; line: Buffer; time?: Date }) => {
                    const t = l.time?.getTime() ?? 0;
                    if (t > until) {
                      stream.cancel();
                      return;
                    }
                    if (wanted(l.stream)) call.write({ stream: l.stream, line: l.line, time: l.time });
                  });
                  stream.on('end', resolve);
                  stream.on('error', (err: { code?: number }) =>
                    err.code === 1 ? resolve() : reject(fromGrpcError(err)),
                  );
                });
                return;
              }
              const maxFiles = Number(c.config?.logOptions['max-file'] ?? 0) || 5;
              let entries = readLogEntries({ path: c.logPath, maxFiles }).filter((e) => {
                const t = e.time.getTime();
                return t >= since && t <= until && wanted(e.stream);
              });
              if (req.tail >= 0n) entries = req.tail === 0n ? [] : entries.slice(-Number(req.tail));
              for (const e of entries) call.write({ stream: e.stream, line: Buffer.from(e.log), time: e.time });
            },
            stats: async ({ ref, stream }, call) => {
              let open = true;
              call.on('cancelled', () => {
                open = false;
              });
              for (;;) {
                const { rec, shim } = await m.shimOf(ref);
                call.write(await stats(rec, shim));
                if (!stream) return;
                await new Promise((r) => setTimeout(r, 1000));
                if (!open) return;
              }
            },
            top: async ({ ref, psArgs }) => {
              const { rec, shim } = await m.shimOf(ref);
              const { pids } = await shim.pids({ id: rec.container.id });
              const args = psArgs.length ? psArgs : ['-ef'];
              const { stdout } = await run('ps', args).catch((err: Error) => {
                throw invalidArgument(`ps: ${err.message.split('\n')[0]}`);
              });
              const lines = stdout.trimEnd().split('\n');
              const titles = lines[0].trim().split(/\s+/);
              const pidCol = titles.indexOf('PID');
              if (pidCol < 0) throw invalidArgument("Couldn't find PID field in ps output");
              const processes = lines.slice(1).flatMap((l) => {
                const f = l.trim().split(/\s+/);
                if (!pids.includes(Number(f[pidCol]))) return [];
                const cols = f.slice(0, titles.length - 1);
                cols.push(f.slice(titles.length - 1).join(' '));
                return [{ columns: cols }];
              });
              return { titles, processes };
            },
          },
          ready,
        ),
        report,
      ),
    },
    {
      definition: VolumesService,
      implementation: implement(
        VolumesService,
        gated(
          {
            create: async ({ name, driver, labels, options }) =>
              volumes.toApi(await volumes.create(name, { driver, labels, options })),
            get: async ({ name }) => volumes.toApi(volumes.get(name), true),
            list: async ({ filters }) => {
              const all = m.list();
              const used = new Set(
                all.flatMap((r) => r.container.mounts.filter((x) => x.type === 'volume').map((x) => x.source)),
              );
              const out = [];
              for (const v of volumes.list()) {
                let ok = true;
                for (const f of filters) {
                  const [k, val = ''] = [f.slice(0, f.indexOf('=')), f.slice(f.indexOf('=') + 1)];
                  if (k === 'name') ok &&= v.name.includes(val);
                  else if (k === 'label') ok &&= matchLabel(v.labels, val);
                  else if (k === 'dangling') ok &&= (val === 'true' || val === '1') === !used.has(v.name);
                  else if (k === 'driver') ok &&= v.driver === val;
                  else throw invalidArgument(`invalid filter '${k}'`);
                }
                if (ok) out.push(await volumes.toApi(v));
              }
              return { volumes: out };
            },
            remove: async ({ name, force }) => {
              await volumes.remove(name, force);
              return {};
            },
            prune: async ({ filters, all }) => {
              const { deleted, reclaimed } = await volumes.prune(all, filters);
              return { deleted, spaceReclaimed: BigInt(reclaimed) };
            },
          },
          ready,
        ),
        report,
      ),
    },
  ];
}

/**
 * Attach: the first message names the process (and may ask to start it once
 * attached); then stdin and resizes flow in, output flows out, and the last
 * message is the exit — for the container's init, sent once the exit has
 * been handled (a --rm container is gone by then).
 */
async function attach(m: Containers, call: ServerDuplexStream<AttachRequest, AttachResponse>) {
  const first = await new Promise<AttachRequest | undefined>((resolve) => {
    call.once('data', resolve);
    call.once('end', () => resolve(undefined));
  });
  if (first?.part?.$case !== 'start') throw invalidArgument('attach must begin with the container to attach to');
  const a = first.part.value;
  const wantOut = !a.stdout && !a.stderr ? { stdout: true, stderr: true } : { stdout: a.stdout, stderr: a.stderr };
  let exit: WaitTaskResponse | undefined;
  let shimStream: ReturnType<ShimClient['attach']> | undefined;
  let ended!: Promise<void>;
  let shimRef: ShimClient | undefined;
  let id = '';

  /**
   * Attaches to the process in its shim. With `run` the shim starts it in the
   * same call, and the pid is the answer (undefined from a shim of before
   * that, which the caller then starts); a start that fails rejects.
   */
  const open = async (shim: ShimClient, cid: string, run = false): Promise<number | undefined> => {
    shimRef = shim;
    id = cid;
    const s = shim.attach({ timeoutMs: 365 * 86400_000 });
    shimStream = s;
    let answered!: (pid: number | undefined) => void;
    let failed!: (err: unknown) => void;
    const ready = new Promise<number | undefined>((resolve, reject) => {
      answered = resolve;
      failed = reject;
    });
    ended = new Promise<void>((resolve, reject) => {
      s.on('data', (msg: ShimAttachResponse) => {
        const p = msg.part;
        if (p?.$case === 'started') answered(p.value.pid);
        else if (p?.$case === 'stdout') {
          // The empty first chunk: attached, and not started.
          if (!p.value.length) answered(undefined);
          else if (wantOut.stdout) call.write({ part: { $case: 'stdout', value: p.value } });
        } else if (p?.$case === 'stderr') {
          if (wantOut.stderr) call.write({ part: { $case: 'stderr', value: p.value } });
        } else if (p?.$case === 'exit') {
          exit = { exitCode: p.value.exitStatus, exitedAt: p.value.exitedAt, error: '' };
        }
      });
      s.on('end', () => {
        answered(undefined);
        resolve();
      });
      s.on('error', (err: { code?: number }) => {
        if (err.code === 1) {
          answered(undefined);
          resolve();
          return;
        }
        const e = fromGrpcError(err);
        failed(e);
        reject(e);
      });
    });
    ended.catch(() => undefined);
    s.write({ part: { $case: 'start', value: { id: cid, execId: a.execId } }, run });
    return ready;
  };

  // What the caller sends before the process runs (typed ahead, a resize) waits for it, in order.
  let queue: AttachRequest[] | undefined = [];
  const forward = (req: AttachRequest) => {
    const p = req.part;
    if (p?.$case === 'stdin' && a.stdin) shimStream?.write({ part: { $case: 'stdin', value: p.value }, run: false });
    else if (p?.$case === 'closeStdin') shimStream?.write({ part: { $case: 'closeStdin', value: true }, run: false });
    else if (p?.$case === 'resize')
      void shimRef
        ?.resizePty({ id, execId: a.execId, width: p.value.width, height: p.value.height })
        .catch(() => undefined);
  };
  call.on('data', (req: AttachRequest) => {
    if (queue) queue.push(req);
    else forward(req);
  });
  if (a.create) {
    if (!a.create.config) throw invalidArgument('a container needs a config');
    await m.run(a.create.name, a.create.config, (shim, cid) => open(shim, cid, true));
  } else if (a.start && !a.execId && m.find(a.ref).container.state?.status !== 'running') {
    await m.start(a.ref, (shim, cid) => open(shim, cid, true));
  } else {
    // An exec's process, or a container that runs already (docker start -a attaches to it).
    const { rec, shim } = await m.shimOf(a.ref);
    await open(shim, rec.container.id);
    if (a.start && a.execId) await shim.start({ id: rec.container.id, execId: a.execId });
  }
  for (const req of queue) forward(req);
  queue = undefined;
  const gone = () => shimStream?.cancel();
  call.on('cancelled', gone);
  call.on('end', gone);
  await ended;
  if (!exit) return;
  if (!a.execId) {
    // The container's exit as recorded (and --rm carried out) before the caller hears of it.
    const st = await m.wait(id, 'not-running').catch(() => undefined);
    const rec = (() => {
      try {
        return m.find(id);
      } catch {
        return undefined;
      }
    })();
    if (rec?.container.config?.autoRemove) await m.wait(id, 'removed').catch(() => undefined);
    if (st) exit = { ...exit, exitCode: st.exitCode, error: st.error };
  }
  call.write({ part: { $case: 'exit', value: exit } });
}
