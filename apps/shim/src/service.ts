/** The shim's gRPC API (`ctr.shim.v1.Shim`): every call names its task by container id. */
import type { ServerDuplexStream, ServerWritableStream } from '@grpc/grpc-js';
import {
  type AttachRequest,
  type AttachResponse,
  type LogLine,
  type LogsRequest,
  ShimService,
  type StateResponse,
  Status,
  type WaitResponse,
} from '@ctr/api/shim/v1/shim';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from '@ctr/common/errors';
import { implement, type ServiceBinding } from '@ctr/common/grpc-impl';
import { cgroupParent, validateId } from '@ctr/common/names';
import type { Process, Resources } from '@ctr/oci';
import { type LogEntry, readLogEntries } from '@ctr/common/jsonlog';
import type { Runtime } from './runtime.js';
import { type ExitRecord, type Proc, Task, type TaskContext } from './task.js';

export interface ShimState {
  instance: string;
  tasks: Map<string, Task>;
  /** What every task shares; the runtime is chosen per task. */
  ctx: Omit<TaskContext, 'runtime'>;
  runtimeFor(name: string): Promise<Runtime>;
  /**
   * Ends the shim: at once it stops listening and its directory (socket,
   * pid file, exit records) goes, so whoever told it to end finds nothing of
   * it left on disk when the reply comes; the rest (connections, the bus,
   * the process) ends after the reply is sent.
   */
  exit(): void;
  /** Moves the shim to container `id` (a warm shim, hosting nothing yet). */
  bind(id: string): Promise<void>;
  /** A task's creation begins (true) or is over, done or failed (false). */
  creating(begins: boolean): void;
}

const STATUS: Record<string, Status> = {
  created: Status.STATUS_CREATED,
  running: Status.STATUS_RUNNING,
  stopped: Status.STATUS_STOPPED,
};

function waitResponse(r: ExitRecord): WaitResponse {
  return { exitStatus: r.exitStatus, exitedAt: new Date(r.exitedAt), oomKilled: r.oomKilled };
}

function parseJson<T>(bytes: Buffer, what: string): T {
  try {
    return JSON.parse(bytes.toString()) as T;
  } catch (err) {
    throw invalidArgument(`${what} is not valid JSON: ${(err as Error).message}`);
  }
}

export function shimApi(state: ShimState): ServiceBinding {
  const task = (id: string): Task => {
    const t = state.tasks.get(id);
    if (!t) throw notFound(`task ${id} not found`);
    return t;
  };

  return {
    definition: ShimService,
    implementation: implement(
      ShimService,
      {
        state: async ({ id, execId }): Promise<StateResponse> => {
          const t = task(id);
          const p = t.process(execId);
          return {
            id,
            execId,
            bundle: t.bundle,
            pid: p.pid,
            status: t.paused && p.status === 'running' ? Status.STATUS_PAUSED : STATUS[p.status],
            // A start that failed stopped it with docker's code before its waiter has reported the end.
            exitStatus: p.exit?.exitStatus ?? p.startFailure ?? 0,
            exitedAt: p.exit ? new Date(p.exit.exitedAt) : undefined,
            oomKilled: p.exit?.oomKilled ?? false,
            terminal: p.io.terminal,
          };
        },
        create: async (req) => {
          validateId(req.id, 'task id');
          if (state.tasks.has(req.id)) throw alreadyExists(`task ${req.id} already exists`);
          if (!req.bundle) throw invalidArgument('a task needs a bundle');
          state.creating(true);
          try {
            const t = await Task.create(
              {
                id: req.id,
                bundle: req.bundle,
                rootfs: req.rootfs.map((m) => ({ type: m.type, source: m.source, options: m.options })),
                terminal: req.terminal,
                stdin: req.stdin,
                log: req.log?.path
                  ? {
                      path: req.log.path,
                      maxSize: Number(req.log.maxSize),
                      maxFiles: req.log.maxFiles,
                      compress: req.log.compress,
                    }
                  : undefined,
                cgroupParent: req.cgroupParent || cgroupParent(state.instance),
              },
              { ...state.ctx, runtime: await state.runtimeFor(req.runtime) },
            );
            state.tasks.set(req.id, t);
            return { pid: t.init.pid };
          } finally {
            state.creating(false);
          }
        },
        start: async ({ id, execId }) => ({ pid: await task(id).start(execId) }),
        kill: async ({ id, execId, signal, all }) => {
          await task(id).kill(execId, signal || 15, all);
          return {};
        },
        exec: async ({ id, execId, terminal, stdin, spec }) => {
          task(id).addExec(execId, parseJson<Process>(spec, 'the exec process'), terminal, stdin);
          return {};
        },
        resizePty: async ({ id, execId, width, height }) => {
          const p = task(id).process(execId);
          if (!p.io.terminal) throw failedPrecondition('the process has no terminal');
          p.io.resize(width, height);
          return {};
        },
        closeIo: async ({ id, execId }) => {
          task(id).process(execId).io.closeStdin();
          return {};
        },
        pause: async ({ id }) => {
          await task(id).pause();
          return {};
        },
        resume: async ({ id }) => {
          await task(id).resume();
          return {};
        },
        pids: async ({ id }) => ({ pids: await task(id).cgroup.pids() }),
        stats: async ({ id }) => {
          const s = await task(id).cgroup.stats();
          return {
            cpuUsageNanos: s.cpuUsageNanos,
            memoryUsage: BigInt(s.memoryUsage),
            memoryLimit: BigInt(s.memoryLimit),
            memoryCache: BigInt(s.memoryCache),
            pidsCurrent: BigInt(s.pidsCurrent),
            pidsLimit: BigInt(s.pidsLimit),
            oomKills: BigInt(s.oomKills),
            cpuThrottledPeriods: BigInt(s.cpuThrottledPeriods),
            cpuThrottledNanos: s.cpuThrottledNanos,
          };
        },
        update: async ({ id, resources }) => {
          await task(id).update(parseJson<Resources>(resources, 'the resources'));
          return {};
        },
        wait: async ({ id, execId }) => waitResponse(await task(id).process(execId).wait()),
        attach: (call) => attach(call, task),
        logs: (req, call) => logs(req, call, task(req.id)),
        delete: async ({ id, execId }) => {
          const t = task(id);
          const exit = await t.delete(execId);
          if (!execId) state.tasks.delete(id);
          return { pid: exit.pid, exitStatus: exit.exitStatus, exitedAt: new Date(exit.exitedAt) };
        },
        bind: async ({ id }) => {
          validateId(id, 'container id');
          if (state.tasks.size) throw failedPrecondition('the shim already hosts a task');
          await state.bind(id);
          return {};
        },
        shutdown: async ({ now }) => {
          // Not now: only a shim that hosts no task at all (a stopped one's exit is still somebody's).
          if (state.tasks.size && !now) {
            throw failedPrecondition(`the shim still hosts ${[...state.tasks.keys()].join(', ')}`);
          }
          // Now: nothing of the shim's may outlive it, so its tasks are killed and deleted first.
          for (const t of state.tasks.values()) {
            await t.destroy().catch((err) => state.ctx.log.error({ err, id: t.id }, 'cannot destroy the task'));
          }
          state.tasks.clear();
          state.exit();
          return {};
        },
      },
      (err, method) => state.ctx.log.error({ err, method }, 'call failed'),
    ),
  };
}

/**
 * Attach: the first message names the process; then stdin flows in and output
 * flows out until the process has exited and its output is drained, and the
 * last message is its exit.
 */
async function attach(call: ServerDuplexStream<AttachRequest, AttachResponse>, task: (id: string) => Task) {
  // The stream stops after the first message until the stdin handler below is on: what follows at once
  // (stdin, closeStdin, in the same read) would otherwise be emitted with nobody listening.
  const first = await new Promise<AttachRequest | undefined>((resolve) => {
    call.once('data', (m: AttachRequest) => {
      call.pause();
      resolve(m);
    });
    call.once('end', () => resolve(undefined));
  });
  if (first?.part?.$case !== 'start') throw invalidArgument('attach must begin with the process to attach to');
  const { id, execId } = first.part.value;
  const proc: Proc = task(id).process(execId);
  const unsubscribe = proc.io.subscribe((stream, data) => {
    call.write({ part: stream === 'stdout' ? { $case: 'stdout', value: data } : { $case: 'stderr', value: data } });
  });
  if (first.run) {
    // Started in the same call, its output already subscribed to; a start that fails is this call's error.
    try {
      call.write({ part: { $case: 'started', value: { pid: await task(id).start(execId) } } });
    } catch (err) {
      unsubscribe();
      throw err;
    }
  } else {
    // An empty first chunk says "attached": a caller can start the process now and miss no output.
    call.write({ part: { $case: 'stdout', value: Buffer.alloc(0) } });
  }
  call.on('data', (req: AttachRequest) => {
    if (req.part?.$case === 'stdin') proc.io.writeStdin(req.part.value);
    else if (req.part?.$case === 'closeStdin') proc.io.closeStdin();
  });
  call.resume();
  // The client going away detaches it; the process runs on.
  const gone = new Promise<void>((resolve) => {
    call.once('cancelled', resolve);
    call.once('end', resolve);
    call.once('error', () => resolve());
  });
  const exit = await Promise.race([proc.wait(), gone.then(() => undefined)]);
  unsubscribe();
  if (exit) call.write({ part: { $case: 'exit', value: waitResponse(exit) } });
}

/**
 * docker logs: what is on disk (tail, since), then with follow what comes
 * until the process ends. The log is written synchronously on this event loop,
 * so reading the files and subscribing in one synchronous step misses nothing
 * and repeats nothing.
 */
async function logs(req: LogsRequest, call: ServerWritableStream<LogsRequest, LogLine>, t: Task) {
  const log = t.init.io.opts.log;
  if (!log) throw failedPrecondition(`container ${t.id} has no log`);
  const since = req.since?.getTime() ?? 0;
  const send = (e: LogEntry) => {
    if (e.time.getTime() >= since) call.write({ stream: e.stream, line: Buffer.from(e.log), time: e.time });
  };
  let entries = readLogEntries(log.opts).filter((e) => e.time.getTime() >= since);
  if (req.tail > 0n) entries = entries.slice(-Number(req.tail));
  else if (req.tail < 0n) entries = [];
  const follow = req.follow && t.init.status !== 'stopped';
  if (follow) log.on('entry', send);
  for (const e of entries) send(e);
  if (!follow) return;
  await Promise.race([
    t.init.wait(),
    new Promise<void>((resolve) => {
      call.once('cancelled', resolve);
      call.once('close', resolve);
    }),
  ]);
  log.off('entry', send);
}
