/**
 * ctr-shim: one per container, started detached (its own session) by whoever
 * creates the container, so it outlives them; or forked from a shim zygote
 * (zygote.ts), as container-service's warm shims are, which makes it the
 * same process as far as anyone can tell. It is the subreaper of its
 * container's processes, serves `ctr.shim.v1.Shim` on
 * <state>/shims/<id>/shim.sock and publishes task events. Its own log is its
 * stdout (the starter points it at <state>/shims/<id>/shim.log).
 *
 *   ctr-shim --id <id> [--warm] [--root D] [--state D] [--instance N] [--events-url U] [--log-level L]
 *   ctr-shim --zygote [--root D] …: forks shims on its starter's word (zygote.ts)
 *
 * --warm: started ahead of its container (container-service's warm shims).
 * Until it hosts a task, any shim ends when its starter does, so a shim is
 * never left behind by a service that died before it gave the shim its task.
 */
import { readFileSync, rmSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import module from 'node:module';
import { join } from 'node:path';
import { type CgroupLayout, CgroupMovePrimer, hostLayout } from '@ctr/cgroups';
import { type Config, layout, loadConfig } from '@ctr/common/config';
import { parseDaemonFlags, resolveEventsUrl } from '@ctr/common/daemon-flags';
import type { Event } from '@ctr/common/event-types';
import { alreadyExists } from '@ctr/common/errors';
import { type LeanServer, serveH2, socketAlive } from '@ctr/common/grpc-server';
import { HealthReporter, Serving } from '@ctr/common/health';
import { createLogger } from '@ctr/common/log';
import { validateId } from '@ctr/common/names';
import { renice } from '@ctr/common/priority';
import { EventPublisher } from '@ctr/common/publisher';
import { WARM_NICE } from '@ctr/shim-client';
import { setChildSubreaper } from '@ctr/sys';
import { parseMountInfo } from '@ctr/sys/mountinfo';
import { hostCgroupInfo } from './init/host-cgroups.js';
import { type CgroupMountInfo, rehearsePlan } from './init/plan.js';
import { SeccompFilters } from './init/seccomp.js';
import { Reaper } from './reaper.js';
import { NativeRuntime, OciRuntime, type Runtime } from './runtime.js';
import { shimApi } from './service.js';
import type { Task } from './task.js';
import { forkedShim, retitle, runZygote } from './zygote.js';

/**
 * What a shim knows of its host before it serves: where the cgroup
 * hierarchies are mounted, which a host sets up as it boots. The same for
 * every shim, so a zygote learns it once for all the shims it forks (as a
 * shim that lives for months keeps what it learnt at its start).
 */
interface HostView {
  cgroupInfo: CgroupMountInfo;
  cgroups: CgroupLayout;
}

async function learnHost(): Promise<HostView> {
  // Read in this thread: a zygote keeps libuv's thread pool unstarted (zygote.ts).
  const mounts = parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8'));
  return { cgroupInfo: await hostCgroupInfo(mounts), cgroups: await hostLayout(mounts) };
}

/** `host`: what the zygote this shim was forked from learnt (learnHost), and rehearsed its plans with. */
async function main(host?: HostView) {
  let id: string;
  let config: Config;
  let warm = false;
  try {
    // --id is the shim's own; the rest are every daemon's flags.
    const args = process.argv.slice(2);
    const at = args.indexOf('--id');
    if (at < 0 || !args[at + 1]) throw new Error('--id is required');
    id = validateId(args[at + 1], 'shim id');
    args.splice(at, 2);
    const w = args.indexOf('--warm');
    if (w >= 0) {
      warm = true;
      args.splice(w, 1);
    }
    config = loadConfig(parseDaemonFlags(args));
  } catch (err) {
    process.stderr.write(`ctr-shim: ${(err as Error).message}\n`);
    process.exit(2);
  }

  // A warm shim boots behind the work that runs meanwhile (its starter set its first thread; these are the rest).
  if (warm) renice(WARM_NICE);
  const base = createLogger({ name: 'shim', level: config.log.level });
  let log = base.child({ shim: id });
  const paths = layout(config);
  let dir = paths.shimDir(id);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  setChildSubreaper();
  const reaper = new Reaper();

  // Events wait in the publisher's outbox until NATS takes them: a shim must run its container even when the bus is down.
  const queued: Event[] = [];
  let bus: EventPublisher | undefined;
  const publish = (e: Event) => {
    if (bus) void bus.publish(e.$case, e.value as never);
    else queued.push(e);
  };
  void resolveEventsUrl(config)
    .then((url) => {
      bus = EventPublisher.start({ url, instance: config.instance, source: 'shim', log });
      for (const e of queued.splice(0)) publish(e);
    })
    .catch((err) => log.error({ err }, 'events: no NATS address; task events are not published'));

  const { cgroupInfo, cgroups } = host ?? (await learnHost());
  const filters = new SeccompFilters(paths.seccompDir, base);
  const native = new NativeRuntime(reaper, cgroupInfo, await CgroupMovePrimer.open(cgroups), filters);
  const runtimes = new Map<string, Runtime>();
  const runtimeFor = async (name: string): Promise<Runtime> => {
    if (!name || name === 'ctr-init') return native;
    native.dropSpare(); // a shim hosts containers of one runtime, as a rule
    let r = runtimes.get(name);
    if (!r) {
      const root = `${dir}/${name.replace(/[^\w.-]/g, '_')}`;
      await mkdir(root, { recursive: true, mode: 0o700 });
      r = new OciRuntime(name, root, reaper);
      runtimes.set(name, r);
    }
    return r;
  };

  const tasks = new Map<string, Task>();
  const health = new HealthReporter();
  let server: LeanServer | undefined;
  let exiting = false;
  /**
   * Ends the shim. What is on disk goes in this tick (the socket as the
   * server stops listening, then the directory): a Shutdown's caller, which
   * hears back only after this, has nothing to wait for or remove. The
   * calls in flight (that Shutdown's answer) then get 500 ms to end.
   */
  const exit = (code = 0) => {
    if (exiting) return;
    exiting = true;
    log.info('shutting down');
    const closed = server?.close(500);
    rmSync(dir, { recursive: true, force: true });
    void (async () => {
      await closed;
      await bus?.close(2000).catch(() => undefined);
      log.flush();
      process.exit(code);
    })();
  };
  // A shim ends only when told (Shutdown); a stray SIGTERM must not orphan the container.
  process.on('SIGTERM', () => log.warn('SIGTERM ignored: use Shutdown'));
  process.on('SIGINT', () => undefined);
  process.on('SIGHUP', () => undefined);
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception');
    log.flush();
    process.exit(1);
  });

  const ctx = { log, dir, cgroups, publish };
  /**
   * Until it hosts a task, a shim ends once its starter is gone: warm, or
   * bound to a container but not given its task yet (its starter died in
   * between). Nothing else would ever end it. Once it hosts one, it outlives
   * its starter, as it must. The starter names itself (CTR_SHIM_STARTER):
   * one that died while this shim booted (slowly, behind busy work) has left
   * it another parent by now, which would never die.
   */
  const starter = Number(process.env.CTR_SHIM_STARTER) || process.ppid;
  let orphaned: NodeJS.Timeout | undefined;
  const watchStarter = () => {
    clearInterval(orphaned);
    orphaned = setInterval(() => {
      if (process.ppid !== starter && !tasks.size) {
        log.info('its starter is gone, and it hosts no task');
        exit(0);
      }
    }, 1000).unref();
  };
  watchStarter();
  let creatingTasks = 0;
  const creating = (begins: boolean) => {
    creatingTasks += begins ? 1 : -1;
    clearInterval(orphaned);
    orphaned = undefined;
    // A creation that failed leaves the shim hosting nothing, as before it.
    if (!creatingTasks && !tasks.size) watchStarter();
  };
  /**
   * A warm shim becomes container `to`'s: its directory (socket, pid file and
   * log inside, all still open) is renamed to the container's, so whoever
   * looks for the container's shim finds this one. A directory left there by
   * a shim that died goes first; a live one is never replaced.
   */
  const bind = async (to: string) => {
    if (to === id) return;
    const target = paths.shimDir(to);
    if (await socketAlive(paths.shimSocket(to))) throw alreadyExists(`container ${to} already has a shim`);
    await rm(target, { recursive: true, force: true });
    await rename(dir, target);
    // Its container's now: at the priority of everything else.
    renice(0);
    log.info({ container: to }, 'bound to its container');
    id = to;
    retitle(id);
    dir = target;
    log = base.child({ shim: id });
    ctx.dir = dir;
    ctx.log = log;
  };
  server = await serveH2(paths.shimSocket(id), [
    health.binding(),
    shimApi({ instance: config.instance, tasks, ctx, runtimeFor, exit: () => exit(0), bind, creating }),
  ]);
  await writeFile(`${dir}/shim.pid`, `${process.pid}\n`);
  health.set('', Serving.SERVING);
  if (warm)
    setImmediate(() => {
      if (!host) rehearsePlan(cgroupInfo);
      native.spare();
    });
  // The code this boot compiled, on disk now for the next shim (by default only at exit, which may be days away).
  if (!forkedShim()) setImmediate(() => module.flushCompileCache?.());
  log.info({ socket: server.socketPath, pid: process.pid }, 'serving');
}

/**
 * Serves a socket and makes a logger once, both thrown away: a zygote does,
 * so that what Node loads and builds on its first use of them (its net and
 * stream internals, pino's) is the zygote's, shared by every shim it forks,
 * rather than each shim's own copy: some 0.3 MB of every shim's PSS here.
 */
async function rehearseServing(scratch: string): Promise<void> {
  createLogger({ name: 'shim', json: true }); // json: its stdout stays unmade, as a forked shim's fd 1 is its log
  const socket = join(scratch, `rehearsal-${process.pid}.sock`);
  try {
    const server = await serveH2(socket, [new HealthReporter().binding()]);
    await server.close(0);
  } finally {
    rmSync(socket, { force: true });
  }
}

if (process.argv.includes('--zygote')) {
  let paths: ReturnType<typeof layout>;
  try {
    paths = layout(loadConfig(parseDaemonFlags(process.argv.slice(2).filter((a) => a !== '--zygote'))));
  } catch (err) {
    process.stderr.write(`ctr-shim: ${(err as Error).message}\n`);
    process.exit(2);
  }
  // The zygote learns the host and rehearses a plan and serving once, before its first fork: each shim it forks is spared them.
  const prepare = async () => {
    const host = await learnHost();
    rehearsePlan(host.cgroupInfo);
    await rehearseServing(paths.zygoteDir);
    return host;
  };
  void prepare().then(
    (host) => runZygote(() => main(host), paths.shimDir),
    (err) => {
      process.stderr.write(`ctr-shim zygote: ${(err as Error).message}\n`);
      process.exit(1);
    },
  );
} else void main();
