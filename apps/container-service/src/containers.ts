/**
 * The container lifecycle: create (record, snapshot, volumes), start (network,
 * spec, bundle, a detached shim), the watch on each running task, what an exit
 * means (--rm, restart policy with backoff), stop/kill/pause/remove, and the
 * reconcile after this service's own restart.
 *
 * Truth and order: a container's exit is written here before anything acts on
 * it; the shim keeps the exit status until then, so after a crash of this
 * service the shim's State is read again and nothing is lost. A stopped
 * container holds no shim, no namespace and no address.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { mkdir, readdir, readFile, readlink, rm, rmdir, symlink } from 'node:fs/promises';
import { join } from 'node:path';
import type {
  Container,
  ContainerConfig,
  ContainerState,
  MountSpec,
  NetworkAttachment,
  PortBinding,
} from '@ctr/api/containers/v1/containers';
import type { ImagesService } from '@ctr/api/images/v1/images';
import type { NamesRequest, NamesResponse, NetworksService, PortMapping } from '@ctr/api/networks/v1/networks';
import { Status } from '@ctr/api/shim/v1/shim';
import type { SnapshotsService } from '@ctr/api/snapshots/v1/snapshots';
import type { Mount } from '@ctr/api/types/v1/types';
import type { Config, Layout } from '@ctr/common/config';
import { resolveEventsUrl } from '@ctr/common/daemon';
import {
  alreadyExists,
  failedPrecondition,
  fromGrpcError,
  invalidArgument,
  isNotFound,
  isUnavailable,
  notFound,
} from '@ctr/common/errors';
import type { EventBus } from '@ctr/common/events';
import type { ApiClient } from '@ctr/common/grpc';
import { readStream, socketAlive } from '@ctr/common/grpc';
import type { Logger } from '@ctr/common/log';
import { cgroupParent } from '@ctr/common/names';
import { applyChanges, type CommitConfig, mergeEnv, resolveUser, type Spec } from '@ctr/oci';
import { Cgroup, type CgroupLayout, CgroupMovePrimer, hostLayout } from '@ctr/cgroups';
import { closeFd, MNT, O, openat2, type SysError, umount } from '@ctr/sys';
import {
  connectShim,
  readExitRecord,
  removeShimDir,
  type ShimClient,
  type ShimEngine,
  startShim,
  stopTask,
} from '@ctr/shim-client';
import { cleanCopyMounts, mountOffline, unmountOffline } from './copy.js';
import { GROUP_PREFIX, isGroupShim, isWarmShim, WarmShims } from './warm.js';
import { randomName, VALID_NAME } from './names.js';
import { bundleConfig, containerSpec, imageUsers, layerDirs, type NameFiles } from './spec.js';
import type { ContainerRecord, Store } from './store.js';
import type { Volumes } from './volumes.js';

export interface Deps {
  config: Config;
  layout: Layout;
  log: Logger;
  bus: EventBus;
  store: Store;
  volumes: Volumes;
  images: ApiClient<typeof ImagesService>;
  snapshots: ApiClient<typeof SnapshotsService>;
  networks: ApiClient<typeof NetworksService>;
  /** The static ctr-init, bind-mounted as the container's PID 1 for --init. */
  initBinary: string;
}

const LIVE = new Set(['running', 'paused']);
const DAY = 24 * 3600_000;
/** The label that ties a snapshot to its container (orphans are removed on start). */
export const SNAPSHOT_LABEL = 'ctr.container';
const INIT_PATH = '/sbin/docker-init';
/**
 * Clean-up calls to a peer service wait out its restart (ctrd brings it back
 * in about a second): a sandbox or snapshot whose removal met an outage would
 * otherwise be left with nothing owning it.
 */
const THROUGH_RESTART = { retryMs: 60_000 };

const SIGNALS: Record<string, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGILL: 4,
  SIGTRAP: 5,
  SIGABRT: 6,
  SIGBUS: 7,
  SIGFPE: 8,
  SIGKILL: 9,
  SIGUSR1: 10,
  SIGSEGV: 11,
  SIGUSR2: 12,
  SIGPIPE: 13,
  SIGALRM: 14,
  SIGTERM: 15,
  SIGSTKFLT: 16,
  SIGCHLD: 17,
  SIGCONT: 18,
  SIGSTOP: 19,
  SIGTSTP: 20,
  SIGTTIN: 21,
  SIGTTOU: 22,
  SIGURG: 23,
  SIGXCPU: 24,
  SIGXFSZ: 25,
  SIGVTALRM: 26,
  SIGPROF: 27,
  SIGWINCH: 28,
  SIGIO: 29,
  SIGPWR: 30,
  SIGSYS: 31,
};

/** docker's signal syntax: "KILL", "SIGKILL", "9". */
export function parseSignal(value: string, fallback = 15): number {
  if (!value) return fallback;
  if (/^\d+$/.test(value)) {
    const n = Number(value);
    if (n < 1 || n > 64) throw invalidArgument(`Invalid signal: ${value}`);
    return n;
  }
  const name = value.toUpperCase().startsWith('SIG') ? value.toUpperCase() : `SIG${value.toUpperCase()}`;
  const n = SIGNALS[name];
  if (!n) throw invalidArgument(`Invalid signal: ${value}`);
  return n;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function emptyState(): ContainerState {
  return {
    status: 'created',
    running: false,
    paused: false,
    restarting: false,
    oomKilled: false,
    dead: false,
    pid: 0,
    exitCode: 0,
    error: '',
    startedAt: undefined,
    finishedAt: undefined,
  };
}

/** docker's log options: max-size (k/m/g) and max-file. */
function logLimits(opts: Record<string, string>): { maxSize: bigint; maxFiles: number } {
  let maxSize = 0n;
  let maxFiles = 0;
  for (const [k, v] of Object.entries(opts)) {
    if (k === 'max-size') {
      const m = /^(\d+)([kmg]?)b?$/i.exec(v);
      if (!m) throw invalidArgument(`invalid value for log-opt max-size: ${v}`);
      const unit = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[m[2].toLowerCase() as '' | 'k' | 'm' | 'g'];
      maxSize = BigInt(Number(m[1]) * unit);
    } else if (k === 'max-file') {
      if (!/^\d+$/.test(v) || Number(v) < 1) throw invalidArgument(`invalid value for log-opt max-file: ${v}`);
      maxFiles = Number(v);
    } else if (k !== 'compress') {
      throw invalidArgument(`unknown log opt '${k}' for json-file log driver`);
    }
  }
  return { maxSize, maxFiles };
}

/** What docker commit writes as the new image's config: the container's own, the image's merged in at create. */
export function commitConfig(rec: ContainerRecord): CommitConfig {
  const cfg = rec.container.config;
  const base = { ...(rec.imageConfig as CommitConfig) };
  if (!cfg) return base;
  return {
    ...base,
    User: cfg.user || undefined,
    Env: cfg.env,
    Entrypoint: cfg.entrypoint.length ? cfg.entrypoint : null,
    Cmd: cfg.cmd.length ? cfg.cmd : null,
    WorkingDir: cfg.workingDir || undefined,
    Labels: Object.keys(cfg.labels).length ? cfg.labels : undefined,
    StopSignal: cfg.stopSignal || undefined,
    ExposedPorts: cfg.exposedPorts.length
      ? Object.fromEntries(cfg.exposedPorts.map((p) => [p.includes('/') ? p : `${p}/tcp`, {}]))
      : undefined,
  };
}

/** What a start runs between the task's create and its start: an attach, which may start it itself (its pid). */
export type BeforeStart = (shim: ShimClient, id: string) => Promise<number | undefined>;

/** What network-service made for a container: its namespace, endpoint, port maps and the text of its name files. */
interface Attached {
  netns: string;
  names: NamesResponse;
  attachments: NetworkAttachment[];
  ports: PortBinding[];
}

/** A container's network as its spec takes it: the name files on disk (another container's, when it joins that one's). */
interface NetworkSetup extends Omit<Attached, 'names'> {
  names: NameFiles;
}

/** A new container's id: 64 hex digits, as docker's. */
function newContainerId(): string {
  return randomBytes(32).toString('hex');
}

export class Containers {
  #locks = new Map<string, Promise<unknown>>();
  #shims = new Map<string, ShimClient>();
  #cgroups?: CgroupLayout;
  /** Opened at the first start: see #start. */
  #movePrimer?: Promise<CgroupMovePrimer>;
  /** Group shims (shim.group > 1) and the containers each hosts. */
  #groups = new Map<string, Set<string>>();
  /** Shims started (or taken warm) for a start that has not used them yet: they hold no stale task. */
  #newShims = new Set<string>();
  /** Warm shims taken for a start whose move to the container (Bind) may still be under way. */
  #binding = new Map<string, Promise<void>>();
  /** Shim directories being removed as their shims exit: a new shim for the container waits for its own. */
  #shimsGoing = new Map<string, Promise<void>>();
  /** Containers whose task this service released since it last ran (a removal need not release them again). */
  #released = new Set<string>();
  /** The watch of each running task: resolves once its exit has been handled (--rm and policy included). */
  #monitors = new Map<string, Promise<void>>();
  #changed = new Map<string, Set<() => void>>();
  #restartTimers = new Map<string, NodeJS.Timeout>();
  #removing = new Set<string>();
  #closing = false;
  /** Containers whose create is under way: their snapshot exists before their record. */
  readonly #creating = new Set<string>();
  /** Containers a restart is stopping: a --rm one is not removed by that stop. */
  readonly #restarting = new Set<string>();
  /** The layers of containers that run's create is preparing still (create's layerLater), by container. */
  readonly #layers = new Map<string, Promise<{ mounts: Mount[] }>>();
  /** Networks that runs began before their creates were done (#earlyNetwork), by container. */
  readonly #nets = new Map<string, Promise<Attached>>();
  #sweepTimer?: NodeJS.Timeout;
  #engine?: ShimEngine;

  readonly #warm: WarmShims;

  constructor(private readonly d: Deps) {
    this.#warm = new WarmShims(() => this.#shimEngine(), d.config.shim.warm, d.log, d.config.shim.zygote);
  }

  // ---------------------------------------------------------------- lookup

  /** A container by full id, name, or unique id prefix. */
  find(ref: string): ContainerRecord {
    const { store } = this.d;
    const byId = store.container(ref) ?? store.byName(ref.replace(/^\//, ''));
    if (byId) return byId;
    if (/^[0-9a-f]{1,63}$/.test(ref)) {
      const matches = store.containers().filter((r) => r.container.id.startsWith(ref));
      if (matches.length === 1) return matches[0];
      if (matches.length > 1) throw invalidArgument(`multiple IDs found with provided prefix: ${ref}`);
    }
    throw notFound(`No such container: ${ref}`);
  }

  list(): ContainerRecord[] {
    return this.d.store.containers();
  }

  // ---------------------------------------------------------------- create

  /** docker create. */
  async create(requestedName: string, cfg: ContainerConfig): Promise<Container> {
    return this.#create(newContainerId(), this.#checkCreate(requestedName, cfg), cfg);
  }

  /**
   * create's work, once #checkCreate has passed the config and chosen the
   * `name`. `layerLater` (run's create, the start following at once): the
   * container's layer is prepared while the record is stored and the start
   * begins, rather than before; the start waits for it (#layers), and what it
   * would refuse (a user the image does not have) is refused there. The
   * record is then not synced to disk on its own: the start's, some 20 ms
   * later, syncs it with its own (one write-ahead log), and the run's caller
   * hears of the container only after that. A sync was some 2 ms that held
   * up everything else here, the layer's prepare call included.
   */
  async #create(id: string, name: string, cfg: ContainerConfig, { layerLater = false } = {}): Promise<Container> {
    const { store, images, snapshots, layout } = this.d;
    const policy = cfg.restartPolicy?.name || 'no';

    let image: Awaited<ReturnType<typeof images.config>>;
    try {
      image = await images.config({ ref: cfg.image });
    } catch (err) {
      if (isNotFound(err)) throw notFound(`No such image: ${cfg.image}`);
      throw err;
    }
    const imageDoc = JSON.parse(image.configJson.toString()) as { config?: ContainerRecord['imageConfig'] };
    const imageConfig = imageDoc.config ?? {};
    const entrypoint = cfg.entrypointSet ? cfg.entrypoint : (imageConfig.Entrypoint ?? []);
    let cmd = cfg.entrypointSet ? [] : (imageConfig.Cmd ?? []);
    if (cfg.cmd.length) cmd = cfg.cmd;
    const argv = [...entrypoint, ...cmd];
    if (!argv.length) throw invalidArgument('no command specified');

    const dir = layout.containerDir(id);
    const undo: (() => Promise<unknown>)[] = [];
    const anonymous: string[] = [];
    this.#creating.add(id);
    try {
      // In place, as the bundle below and the removal (#removeFiles): a thread-pool trip is some 1 ms here.
      mkdirSync(dir, { recursive: true, mode: 0o710 });
      undo.push(() => rm(dir, { recursive: true, force: true }));
      const layer = snapshots.prepare({ key: id, parent: image.chainId, labels: { [SNAPSHOT_LABEL]: id } });
      undo.push(() => layer.then(() => snapshots.remove({ key: id }, THROUGH_RESTART)));
      let rootfs: Mount[] | undefined;
      if (layerLater) {
        layer.catch(() => undefined); // the start's to report
        this.#layers.set(id, layer);
      } else rootfs = (await layer).mounts;

      const mounts: MountSpec[] = [];
      for (const m of cfg.mounts) mounts.push(await this.#resolveMount(m, anonymous, undo));
      for (const target of Object.keys(imageConfig.Volumes ?? {})) {
        if (mounts.some((m) => m.target === target)) continue;
        mounts.push(
          await this.#resolveMount(
            { type: 'volume', source: '', target, readOnly: false, options: [], hostPath: '' },
            anonymous,
            undo,
          ),
        );
      }

      const container: Container = {
        id,
        name,
        image: cfg.image,
        imageId: image.id,
        // What runs, as docker records it: the image's defaults merged in.
        config: {
          ...cfg,
          env: mergeEnv(imageConfig.Env ?? [], cfg.env),
          entrypoint,
          cmd,
          workingDir: cfg.workingDir || imageConfig.WorkingDir || '',
          user: cfg.user || imageConfig.User || '',
          labels: { ...(imageConfig.Labels ?? {}), ...cfg.labels },
          stopSignal: cfg.stopSignal || imageConfig.StopSignal || '',
          exposedPorts: [...new Set([...Object.keys(imageConfig.ExposedPorts ?? {}), ...cfg.exposedPorts])],
          restartPolicy: { name: policy, maximumRetryCount: cfg.restartPolicy?.maximumRetryCount ?? 0 },
        },
        state: emptyState(),
        createdAt: new Date(),
        snapshotKey: id,
        bundlePath: layout.bundleDir(id),
        logPath: join(dir, `${id}-json.log`),
        restartCount: 0,
        networks: [],
        ports: [],
        mounts,
        path: argv[0],
        args: argv.slice(1),
        resolvConfPath: join(dir, 'resolv.conf'),
        hostsPath: join(dir, 'hosts'),
        hostnamePath: join(dir, 'hostname'),
        sizeRw: 0n,
        sizeRootFs: 0n,
      };
      const record: ContainerRecord = {
        container,
        imageConfig,
        chainId: image.chainId,
        manuallyStopped: false,
        anonymousVolumes: anonymous,
      };
      // What a start would refuse (a user the image does not have, a bad option) is refused now.
      if (rootfs) containerSpec(container, imageConfig, { users: imageUsers(layerDirs(rootfs)) });
      // The name is taken in the same statement that stores the record.
      try {
        store.putContainer(record, { sync: !layerLater });
      } catch (err) {
        const other = store.byName(name);
        if (other) throw this.#nameConflict(name, other.container.id);
        throw err;
      }
      void this.d.bus.publish('containerCreated', { id, name, image: cfg.image });
      return container;
    } catch (err) {
      this.#layers.delete(id);
      for (const u of undo.reverse()) await u().catch(() => undefined);
      throw err;
    } finally {
      this.#creating.delete(id);
    }
  }

  /** What a create refuses before it looks anything up; the container's name (a random one when none was asked for). */
  #checkCreate(requestedName: string, cfg: ContainerConfig): string {
    const { store } = this.d;
    if (!cfg.image) throw invalidArgument('No image specified');
    let name = requestedName.replace(/^\//, '');
    if (name) {
      if (!VALID_NAME.test(name))
        throw invalidArgument(`Invalid container name (${name}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
      const taken = store.byName(name);
      if (taken) throw this.#nameConflict(name, taken.container.id);
    } else {
      name = randomName((n) => Boolean(store.byName(n)));
    }
    const policy = cfg.restartPolicy?.name || 'no';
    if (!['no', 'always', 'on-failure', 'unless-stopped'].includes(policy))
      throw invalidArgument(`invalid restart policy: ${policy}`);
    if (cfg.autoRemove && policy !== 'no') throw invalidArgument('Conflicting options: --restart and --rm');
    logLimits(cfg.logOptions); // refused now rather than at start
    return name;
  }

  #nameConflict(name: string, id: string) {
    return alreadyExists(
      `Conflict. The container name "/${name}" is already in use by container "${id}". You have to remove (or rename) that container to be able to reuse that name.`,
    );
  }

  async #resolveMount(m: MountSpec, anonymous: string[], undo: (() => Promise<unknown>)[]): Promise<MountSpec> {
    if (!m.target.startsWith('/'))
      throw invalidArgument(`invalid mount config: the mount point ${m.target} is not absolute`);
    if (m.type === 'volume') {
      const existed = m.source ? Boolean(this.d.store.volume(m.source)) : false;
      const v = await this.d.volumes.create(m.source);
      if (!m.source) anonymous.push(v.name);
      if (!existed) undo.push(() => this.d.volumes.remove(v.name, true));
      return { ...m, source: v.name, hostPath: v.mountpoint };
    }
    if (m.type === 'bind') {
      if (!m.source.startsWith('/'))
        throw invalidArgument(`invalid mount config: bind source path must be absolute: ${m.source}`);
      // docker -v makes a missing host directory; --mount refuses it (ctrctl checks that before it asks).
      if (!existsSync(m.source)) await mkdir(m.source, { recursive: true });
      return { ...m, hostPath: m.source };
    }
    if (m.type === 'tmpfs') return { ...m, hostPath: '' };
    throw invalidArgument(`invalid mount config: unknown mount type ${m.type}`);
  }

  // ---------------------------------------------------------------- locks and waiting

  async #locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#locks.get(id) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(fn);
    this.#locks.set(id, next);
    try {
      return await next;
    } finally {
      if (this.#locks.get(id) === next) this.#locks.delete(id);
    }
  }

  #notify(id: string) {
    const set = this.#changed.get(id);
    if (!set) return;
    this.#changed.delete(id);
    for (const f of set) f();
  }

  /** Resolves at the container's next state change (or removal). */
  #nextChange(id: string): Promise<void> {
    return new Promise((resolve) => {
      let set = this.#changed.get(id);
      if (!set) {
        set = new Set();
        this.#changed.set(id, set);
      }
      set.add(resolve);
    });
  }

  /** docker wait: not-running (default), next-exit, removed. */
  async wait(ref: string, condition: 'not-running' | 'next-exit' | 'removed'): Promise<ContainerState> {
    let rec = this.find(ref);
    const id = rec.container.id;
    const startedAt = rec.container.state?.finishedAt?.getTime() ?? 0;
    for (;;) {
      const change = this.#nextChange(id);
      const current = this.d.store.container(id);
      if (!current) {
        if (condition === 'removed' || rec.container.state) return rec.container.state ?? emptyState();
      } else {
        rec = current;
        const st = current.container.state ?? emptyState();
        const stopped = !LIVE.has(st.status) && st.status !== 'restarting';
        if (condition === 'not-running' && stopped && st.status !== 'created') return st;
        if (condition === 'next-exit' && st.finishedAt && st.finishedAt.getTime() !== startedAt) return st;
      }
      await change;
    }
  }

  // ---------------------------------------------------------------- start

  /**
   * Starts the container's task. `beforeStart` runs once the task exists in
   * its shim and before its process runs (attach there, miss nothing); when
   * it started the process itself (Attach's run), it gives its pid.
   */
  start(ref: string, beforeStart?: BeforeStart): Promise<number> {
    const rec = this.find(ref);
    return this.#locked(rec.container.id, () => this.#start(rec.container.id, beforeStart));
  }

  /**
   * docker run's two halves in one call: the container made, then started.
   * A start that fails removes it again, anonymous volumes and all, so a
   * failed run leaves nothing; the start's error is the one thrown.
   */
  async run(requestedName: string, cfg: ContainerConfig, beforeStart?: BeforeStart): Promise<Container> {
    const id = newContainerId();
    const name = this.#checkCreate(requestedName, cfg);
    // The network, which needs nothing of the image (unless -P), is made while the create looks the image up.
    this.#earlyNetwork(id, name, cfg);
    let c: Container;
    try {
      c = await this.#create(id, name, cfg, { layerLater: true });
    } catch (err) {
      await this.#dropEarlyNetwork(id);
      throw err;
    }
    try {
      await this.start(c.id, beforeStart);
    } catch (err) {
      await this.#dropEarlyNetwork(c.id);
      await this.remove(c.id, { force: true, volumes: true }).catch((e) =>
        this.d.log.warn({ err: e, id: c.id }, 'cannot remove a container whose start failed'),
      );
      throw err;
    }
    return this.find(c.id).container;
  }

  async #start(id: string, beforeStart?: BeforeStart): Promise<number> {
    const rec = this.d.store.container(id);
    if (!rec) throw notFound(`No such container: ${id}`);
    const c = rec.container;
    const st = c.state ?? emptyState();
    if (st.status === 'paused') throw failedPrecondition(`cannot start a paused container, try unpause instead`);
    if (st.status === 'running') {
      if (beforeStart) throw failedPrecondition(`container ${id} is already running`);
      return st.pid;
    }
    if (st.status === 'removing') throw failedPrecondition(`container ${id} is being removed`);
    this.#clearRestartTimer(id);
    this.#released.delete(id);
    // The shim places the container's init in its cgroup some 20-30 ms from now, and the first cgroup
    // move after a quiet spell waits out an RCU grace period of the kernel's (about 10 ms here): one made
    // now, while the network and the bundle are made, has it over by then (CgroupMovePrimer).
    this.#movePrimer ??= hostLayout().then((l) => CgroupMovePrimer.open(l));
    void this.#movePrimer.then((p) => p.prime()).catch(() => undefined);
    const undo: (() => Promise<unknown>)[] = [];
    // The shim gets ready (a warm one bound, or one booted) while the network and the bundle do.
    const shimReady = this.#shim(id, true);
    shimReady.catch(() => undefined);
    undo.push(async () => {
      await shimReady.catch(() => undefined);
      await this.#binding.get(id)?.catch(() => undefined);
      this.#binding.delete(id);
      await this.#dropShim(id);
    });
    try {
      // Both settle before either's failure is thrown: what the network made is in `undo` by then.
      const layer = this.#layers.get(id);
      const early = this.#nets.get(id);
      this.#nets.delete(id);
      if (early) undo.push(() => this.d.networks.removeSandbox({ containerId: id }, THROUGH_RESTART));
      const [network, snapshot] = await Promise.allSettled([
        early ? early.then((n) => this.#nameFiles(c, n)) : this.#network(rec, undo),
        layer ?? this.d.snapshots.mounts({ key: c.snapshotKey }),
      ]);
      this.#layers.delete(id);
      if (network.status === 'rejected') throw network.reason;
      if (snapshot.status === 'rejected') throw snapshot.reason;
      const { netns, names, attachments, ports } = network.value;
      const rootfs = c.config?.autoRemove ? snapshot.value.mounts.map(volatile) : snapshot.value.mounts;
      const spec = containerSpec(c, rec.imageConfig, {
        netns,
        names,
        users: imageUsers(layerDirs(rootfs)),
        initPath: c.config?.init ? INIT_PATH : undefined,
      });
      if (c.config?.init) {
        spec.mounts?.push({ destination: INIT_PATH, type: 'bind', source: this.d.initBinary, options: ['bind', 'ro'] });
      }
      mkdirSync(c.bundlePath, { recursive: true, mode: 0o700 });
      // Made anew at every start, so a plain write: nothing to keep through a crash.
      writeFileSync(bundleConfig(c.bundlePath), JSON.stringify(spec), { mode: 0o600 });
      const shim = await shimReady;
      if (!shim) throw new Error('unreachable');
      // A warm shim's move to the container (Bind), sent as it was taken, is done before it hosts anything.
      const bound = this.#binding.get(id);
      this.#binding.delete(id);
      await bound;
      // A stale task of an earlier run (this service died before it deleted it) goes first; a new shim has none.
      if (!this.#newShims.delete(id)) await shim.delete({ id, execId: '' }).catch(() => undefined);
      const log = logLimits(c.config?.logOptions ?? {});
      const created = shim.create({
        id,
        bundle: c.bundlePath,
        rootfs,
        terminal: Boolean(c.config?.tty),
        stdin: Boolean(c.config?.openStdin),
        log: { path: c.logPath, maxSize: log.maxSize, maxFiles: log.maxFiles, compress: false },
        cgroupParent: '',
        runtime: '',
      });
      // The warm spare taken for this start is replaced while the shim creates the task: the one stretch
      // of a start this service only waits through. Once the create is on its way: the spawn's fork holds
      // this thread some 2-3 ms, which the call would otherwise wait behind.
      setImmediate(() => this.#warm.fill());
      await created;
      undo.push(() => shim.delete({ id, execId: '' }));
      // The wait for the exit goes ahead of the start: an exit that comes at once (`run --rm ... true`)
      // is told as it happens, not a round trip after the start's answer.
      const waiting = shim.wait({ id, execId: '' }, { timeoutMs: 365 * DAY });
      waiting.catch(() => undefined); // the watch's to handle; unused when the start fails
      let pid: number;
      try {
        // An attach may have the shim start the process in its own call (the pid is its answer).
        pid = (await beforeStart?.(shim, id)) ?? (await shim.start({ id, execId: '' })).pid;
      } catch (err) {
        // The command could not run: the task ended with docker's code (127, 126), which the container keeps.
        const exit = await shim.state({ id, execId: '' }).catch(() => undefined);
        if (exit?.status === Status.STATUS_STOPPED) {
          c.state = {
            ...emptyState(),
            status: 'exited',
            exitCode: exit.exitStatus,
            error: (err as Error).message,
            startedAt: new Date(),
            finishedAt: new Date(),
          };
          this.d.store.putContainer(rec);
        }
        throw err;
      }
      c.state = {
        ...emptyState(),
        status: 'running',
        running: true,
        pid,
        startedAt: new Date(),
        finishedAt: st.finishedAt,
      };
      c.networks = attachments;
      c.ports = ports;
      rec.manuallyStopped = false;
      this.d.store.putContainer(rec);
      this.#watch(id, shim, pid, waiting);
      this.#notify(id);
      return pid;
    } catch (err) {
      for (const u of undo.reverse()) await u().catch(() => undefined);
      const after = this.d.store.container(id);
      if (after && after.container.state?.status !== 'exited' && !after.container.state?.error) {
        after.container.state = { ...(after.container.state ?? emptyState()), error: (err as Error).message };
        this.d.store.putContainer(after);
      }
      this.#notify(id);
      throw err;
    } finally {
      this.#warm.fill(); // when the start failed before it did (a no-op once the pool is full or filling)
    }
  }

  /** The container's namespace, addresses, port maps and name files. */
  async #network(rec: ContainerRecord, undo: (() => Promise<unknown>)[]): Promise<NetworkSetup> {
    const c = rec.container;
    const cfg = c.config as ContainerConfig;
    const mode = cfg.networkMode || 'bridge';
    if (mode.startsWith('container:')) {
      const target = this.find(mode.slice('container:'.length));
      if (target.container.state?.status !== 'running')
        throw failedPrecondition(`cannot join network of a non running container: ${target.container.id}`);
      const sandbox = await this.d.networks.createSandbox({
        containerId: c.id,
        mode: `container:${target.container.id}`,
        containerName: c.name,
      });
      undo.push(() => this.d.networks.removeSandbox({ containerId: c.id }, THROUGH_RESTART));
      const t = target.container;
      return {
        netns: sandbox.netnsPath || 'host',
        names: { resolvConf: t.resolvConfPath, hosts: t.hostsPath, hostname: t.hostnamePath },
        attachments: [],
        ports: [],
      };
    }
    // A bridge namespace is made by the attach itself (one call less on every start); its undo is in place first.
    undo.push(() => this.d.networks.removeSandbox({ containerId: c.id }, THROUGH_RESTART));
    const exposed = Object.keys(rec.imageConfig.ExposedPorts ?? {});
    return this.#nameFiles(c, await this.#attach(c.id, c.name, cfg, exposed));
  }

  /**
   * The network of a run's container, begun before its create looks the image
   * up (#nets; its start takes it up): when the image has no say in it, which
   * is unless the ports it exposes are published (-P) or the container joins
   * another's namespace.
   */
  #earlyNetwork(id: string, name: string, cfg: ContainerConfig): void {
    const mode = cfg.networkMode || 'bridge';
    if (cfg.publishAllPorts || mode.startsWith('container:')) return;
    const attached = this.#attach(id, name, cfg, []);
    attached.catch(() => undefined); // the start's (or the failed create's) to report
    this.#nets.set(id, attached);
  }

  /** A run's early network, when its container went no further than the create: undone. */
  async #dropEarlyNetwork(id: string): Promise<void> {
    const early = this.#nets.get(id);
    if (!early) return;
    this.#nets.delete(id);
    await early.catch(() => undefined);
    await this.d.networks.removeSandbox({ containerId: id }, THROUGH_RESTART).catch(() => undefined);
  }

  /** Network-service's part: the namespace (host, none, or one on a network), its endpoint and port maps, the name files' text. */
  async #attach(id: string, name: string, cfg: ContainerConfig, imageExposed: string[]): Promise<Attached> {
    const { networks } = this.d;
    const mode = cfg.networkMode || 'bridge';
    const attachments: NetworkAttachment[] = [];
    const ports: PortBinding[] = [];
    const special = mode === 'host' || mode === 'none';
    // The name files come with the namespace (one call less on every start).
    const namesReq: NamesRequest = {
      containerId: id,
      hostname: cfg.hostname || (mode === 'host' ? '' : id.slice(0, 12)),
      domainname: cfg.domainname,
      dns: cfg.dns,
      dnsSearch: cfg.dnsSearch,
      dnsOptions: cfg.dnsOptions,
      extraHosts: cfg.extraHosts.map((h) => {
        const i = h.indexOf(':');
        return { hostname: h.slice(0, i), ip: h.slice(i + 1) };
      }),
    };
    let names: NamesResponse | undefined;
    let netnsPath = '';
    if (special) {
      const sandbox = await networks.createSandbox({ containerId: id, mode, containerName: name, names: namesReq });
      netnsPath = sandbox.netnsPath;
      names = sandbox.names;
    } else {
      const exposed = new Set([...cfg.exposedPorts, ...imageExposed]);
      const wanted: PortMapping[] = cfg.portBindings.map((p) => ({
        protocol: p.protocol || 'tcp',
        containerPort: p.containerPort,
        hostPort: p.hostPort,
        hostIp: p.hostIp,
      }));
      if (cfg.publishAllPorts) {
        for (const e of exposed) {
          const [port, proto = 'tcp'] = e.split('/');
          if (!wanted.some((w) => w.containerPort === Number(port) && w.protocol === proto))
            wanted.push({ protocol: proto, containerPort: Number(port), hostPort: 0, hostIp: '' });
        }
      }
      const userNetwork = mode !== 'bridge';
      const ep = await networks.attach({
        containerId: id,
        network: mode,
        containerName: name,
        aliases: userNetwork ? [...cfg.networkAliases, id.slice(0, 12)] : [],
        ipv4Address: cfg.ipv4Address,
        ports: wanted,
        macAddress: '',
        interfaceName: '',
        names: namesReq,
      });
      names = ep.names;
      // Never the host's namespace by mistake: a bridge container has its own, or does not start.
      if (!ep.netnsPath) throw new Error(`network-service gave container ${id} no network namespace`);
      netnsPath = ep.netnsPath;
      attachments.push({
        networkId: ep.networkId,
        networkName: ep.networkName,
        endpointId: ep.id,
        ipv4Address: ep.ipv4Address,
        prefixLength: ep.prefixLength,
        gateway: ep.gateway,
        macAddress: ep.macAddress,
        aliases: ep.aliases,
      });
      for (const p of ep.ports)
        ports.push({
          protocol: p.protocol,
          containerPort: p.containerPort,
          hostPort: p.hostPort,
          hostIp: p.hostIp || '0.0.0.0',
        });
    }
    // A network-service of before this field answers without it: asked for on its own then.
    names ??= await networks.names(namesReq);
    return { netns: mode === 'host' ? 'host' : netnsPath, names, attachments, ports };
  }

  /** The name files of an attach's answer, written to the container's directory. */
  #nameFiles(c: Container, a: Attached): NetworkSetup {
    const files: NameFiles = { resolvConf: c.resolvConfPath, hosts: c.hostsPath, hostname: c.hostnamePath };
    // Three small files, written at once: nine trips through libuv's thread pool cost a start some 3 ms.
    writeFileSync(files.resolvConf, a.names.resolvConf, { mode: 0o644 });
    writeFileSync(files.hosts, a.names.hosts, { mode: 0o644 });
    writeFileSync(files.hostname, `${a.names.hostname}\n`, { mode: 0o644 });
    return { ...a, names: files };
  }

  // ---------------------------------------------------------------- shims

  async #shimEngine(): Promise<ShimEngine> {
    this.#engine ??= {
      root: this.d.config.root,
      state: this.d.config.state,
      instance: this.d.config.instance,
      eventsUrl: await resolveEventsUrl(this.d.config),
      logLevel: this.d.config.log.level,
    };
    return this.#engine;
  }

  /** The container's shim: the one running (re-adopted from its socket), or a new one when `start`. */
  async #shim(id: string, start = false): Promise<ShimClient | undefined> {
    const known = this.#shims.get(id);
    if (known) return known;
    await this.#shimsGoing.get(id);
    const engine = await this.#shimEngine();
    if (await socketAlive(this.d.layout.shimSocket(id))) {
      const client = connectShim(engine, id);
      this.#shims.set(id, client);
      return client;
    }
    if (!start) return undefined;
    let client: ShimClient;
    if (this.d.config.shim.group > 1) client = await this.#joinGroup(engine, id);
    else {
      const warm = await this.#warm.take(id);
      if (warm) this.#binding.set(id, warm.bound);
      client = warm?.client ?? (await startShim(engine, id)).client;
    }
    this.#shims.set(id, client);
    this.#newShims.add(id);
    return client;
  }

  /**
   * shim.group > 1: the container joins a shim that hosts fewer than that
   * many (a warm one bound to a new group otherwise). `shims/<id>` is then a
   * symlink to the group's directory, so whoever looks for the container's
   * shim by its id finds the group's socket.
   */
  async #joinGroup(engine: ShimEngine, id: string): Promise<ShimClient> {
    const size = this.d.config.shim.group;
    let group = [...this.#groups].find(([, members]) => members.size < size)?.[0];
    if (group) this.#groups.get(group)?.add(id);
    else {
      group = `${GROUP_PREFIX}${randomBytes(6).toString('hex')}`;
      const warm = await this.#warm.take(group);
      if (warm) {
        await warm.bound.finally(() => warm.client.close());
      } else (await startShim(engine, group)).client.close();
      this.#groups.set(group, new Set([id]));
    }
    const link = this.d.layout.shimDir(id);
    await rm(link, { recursive: true, force: true }); // what a shim that died left
    await symlink(group, link);
    return connectShim(engine, id);
  }

  /** A group's shim once its last container left: ended, unless it still hosts a task (then it stays). */
  async #endGroup(group: string) {
    this.#groups.delete(group);
    const engine = await this.#shimEngine();
    const shim = connectShim(engine, group);
    try {
      await shim.shutdown({ id: group, now: false });
    } catch (err) {
      if (!isUnavailable(err)) {
        this.d.log.warn({ err, group }, 'the group shim stays');
        return;
      }
    } finally {
      shim.close();
    }
    await removeShimDir(engine, group);
  }

  /** The shim of a running task, or a clear error. */
  async shimOf(ref: string): Promise<{ rec: ContainerRecord; shim: ShimClient }> {
    const rec = this.find(ref);
    const st = rec.container.state?.status ?? 'created';
    if (!LIVE.has(st)) throw failedPrecondition(`container ${rec.container.id} is not running`);
    const shim = await this.#shim(rec.container.id);
    if (!shim) throw failedPrecondition(`container ${rec.container.id} is not running`);
    return { rec, shim };
  }

  /** Deletes the task in its shim; false when the shim does not answer (it died). */
  async #deleteTask(shim: ShimClient, id: string): Promise<boolean> {
    try {
      await shim.delete({ id, execId: '' });
    } catch (err) {
      if (isUnavailable(err)) return false;
    }
    return true;
  }

  /**
   * What a task's shim would have undone on delete, when the shim died
   * first (containerd's `shim delete` does the same): what is left of the
   * task's processes is killed, as the container is reported exited; then
   * its cgroup and the rootfs mounted in its bundle go.
   */
  async #afterDeadShim(id: string) {
    this.#cgroups ??= await hostLayout();
    const cgroup = Cgroup.at(this.#cgroups, `${cgroupParent(this.d.config.instance)}/${id}`);
    await cgroup.killAll('SIGKILL').catch(() => undefined);
    // Destroy waits out the kernel finishing their exits (EBUSY meanwhile).
    await cgroup
      .destroy(1000)
      .catch((err) => this.d.log.warn({ err, id }, "cannot remove the cgroup of a dead shim's task"));
    const rec = this.d.store.container(id);
    if (rec) {
      try {
        umount(join(rec.container.bundlePath, 'rootfs'), MNT.DETACH);
      } catch (err) {
        const code = (err as SysError).code;
        if (code !== 'EINVAL' && code !== 'ENOENT')
          this.d.log.warn({ err, id }, "cannot unmount the rootfs of a dead shim's task");
      }
    }
  }

  /** Ends the container's shim (it holds no running task by now); in a group, its task and link go. */
  async #dropShim(id: string, taskGone?: () => void) {
    const group = readlinkOrNone(this.d.layout.shimDir(id));
    if (group !== undefined) {
      // The last member ends its group; nobody joins a group that is ending. (A group this
      // service does not know, as at reconcile, is left to reconcile.)
      const members = this.#groups.get(group);
      members?.delete(id);
      const last = members !== undefined && members.size === 0;
      if (last) this.#groups.delete(group);
      const shim = await this.#shim(id).catch(() => undefined);
      if (!shim || !(await this.#deleteTask(shim, id))) await this.#afterDeadShim(id);
      taskGone?.();
      shim?.close();
      this.#shims.delete(id);
      this.#newShims.delete(id);
      await rm(this.d.layout.shimDir(id), { force: true });
      if (last) await this.#endGroup(group);
      return;
    }
    const shim = await this.#shim(id).catch(() => undefined);
    if (shim && (await this.#deleteTask(shim, id))) {
      // Sent first: the shim ends while the files go (taskGone's removal works in place).
      const down = shim.shutdown({ id, now: true }).catch(() => undefined);
      taskGone?.();
      await down;
    } else {
      await this.#afterDeadShim(id);
      taskGone?.();
    }
    shim?.close();
    this.#shims.delete(id);
    this.#newShims.delete(id);
    // A shim takes its socket and directory away as it answers Shutdown; one of an earlier build only
    // as it exits, and a dead one never: removeShimDir waits for the socket and clears what is left.
    // Not waited for here, so an exit is handled meanwhile; a new shim for the container, and its
    // removal, wait for it.
    const going: Promise<void> = removeShimDir(await this.#shimEngine(), id)
      .catch((err) => this.d.log.warn({ err, id }, 'cannot remove the shim directory'))
      .finally(() => {
        if (this.#shimsGoing.get(id) === going) this.#shimsGoing.delete(id);
      });
    this.#shimsGoing.set(id, going);
  }

  // ---------------------------------------------------------------- exits

  /**
   * The exit record a shim wrote (synced) before it told anyone of the exit:
   * the truth when the shim itself is gone since.
   */
  async #exitOnDisk(id: string): Promise<{ code: number; at: Date; oom: boolean } | undefined> {
    const r = await readExitRecord(await this.#shimEngine(), id);
    return r && { code: r.exitStatus, at: new Date(r.exitedAt), oom: Boolean(r.oomKilled) };
  }

  /** Handles the exit of container `id`'s task, as `shim` tells it: `waiting` when a wait for it is under way. */
  #watch(id: string, shim: ShimClient, pid: number, waiting?: ReturnType<ShimClient['wait']>) {
    const monitor = (async () => {
      for (;;) {
        try {
          const pending = waiting ?? shim.wait({ id, execId: '' }, { timeoutMs: 365 * DAY });
          waiting = undefined; // a wait that failed is made anew
          const exit = await pending;
          await this.#exited(id, pid, { code: exit.exitStatus, at: exit.exitedAt ?? new Date(), oom: exit.oomKilled });
          return;
        } catch (err) {
          if (this.#closing) return;
          if (isUnavailable(err) && !(await socketAlive(this.d.layout.shimSocket(id)))) {
            // The shim died: the exit it wrote to disk, if the task ended first; else the status went with it.
            await this.#exited(
              id,
              pid,
              (await this.#exitOnDisk(id)) ?? {
                code: 255,
                at: new Date(),
                oom: false,
                error: 'the shim exited unexpectedly',
              },
            );
            return;
          }
          if (isNotFound(err)) {
            await this.#exited(id, pid, {
              code: 255,
              at: new Date(),
              oom: false,
              error: 'the task is gone from its shim',
            });
            return;
          }
          this.d.log.warn({ err, id }, 'waiting for the task failed; retrying');
          await sleep(500);
        }
      }
    })().catch((err) => this.d.log.error({ err, id }, 'handling an exit failed'));
    this.#monitors.set(id, monitor);
  }

  /** An exit: recorded first, then the task released, then --rm or the restart policy. */
  async #exited(id: string, pid: number, exit: { code: number; at: Date; oom: boolean; error?: string }) {
    const rec = this.d.store.container(id);
    const c = rec?.container;
    if (!rec || !c || !c.state || !LIVE.has(c.state.status) || (pid && c.state.pid !== pid)) return;
    c.state = {
      ...c.state,
      status: 'exited',
      running: false,
      paused: false,
      pid: 0,
      exitCode: exit.code,
      oomKilled: exit.oom,
      error: exit.error ?? '',
      finishedAt: exit.at,
    };
    c.networks = [];
    c.ports = [];
    const autoRemove =
      Boolean(c.config?.autoRemove) && !this.#removing.has(id) && !this.#closing && !this.#restarting.has(id);
    // Synced, unless the record goes in a moment (--rm): one that a crash leaves is removed by reconcile.
    this.d.store.putContainer(rec, { sync: !autoRemove });
    // A --rm container's layer, bundle and directory go as soon as its task (which had them mounted and
    // open) is deleted, while its shim ends and its namespace goes: `run --rm` waits for the whole removal.
    let filesGone: Promise<void> | undefined;
    await this.#release(
      id,
      autoRemove
        ? () => {
            filesGone = this.#removeFiles(c);
            filesGone.catch(() => undefined); // awaited (and reported) below
          }
        : undefined,
    );
    this.#notify(id);
    if (this.#removing.has(id) || this.#closing) {
      await filesGone?.catch(() => undefined);
      return;
    }
    if (autoRemove) {
      await this.#remove(id, true, filesGone).catch((err) => this.d.log.error({ err, id }, 'auto-remove failed'));
      return;
    }
    if (c.config?.autoRemove) return; // restarting: started again by restart()
    // The record as it is now: a stop (or a start) that came while the task was released has the last word.
    const now = this.d.store.container(id);
    if (now?.container.state?.status === 'exited') this.#maybeRestart(now);
  }

  /**
   * What a stopped task leaves: its shim (with the task's cgroup and mount) and its namespace.
   * `taskGone` is called once the task is deleted (its rootfs unmounted), before the shim has ended.
   */
  async #release(id: string, taskGone?: () => void) {
    this.#released.delete(id);
    // The task is gone, so its namespace has no user left: both go at once.
    await Promise.all([
      this.#dropShim(id, taskGone),
      this.d.networks.removeSandbox({ containerId: id }, THROUGH_RESTART).catch((err) => {
        if (!isNotFound(err)) this.d.log.warn({ err, id }, 'cannot remove the sandbox');
      }),
    ]);
    this.#released.add(id);
  }

  #maybeRestart(rec: ContainerRecord) {
    const c = rec.container;
    const policy = c.config?.restartPolicy;
    const name = policy?.name || 'no';
    const code = c.state?.exitCode ?? 0;
    const max = policy?.maximumRetryCount ?? 0;
    const again =
      !rec.manuallyStopped &&
      (name === 'always' ||
        name === 'unless-stopped' ||
        (name === 'on-failure' && code !== 0 && (max === 0 || c.restartCount < max)));
    if (!again) return;
    // docker's backoff: 100 ms doubling to a minute; a run of 10 s or more starts it over.
    const ran = (c.state?.finishedAt?.getTime() ?? 0) - (c.state?.startedAt?.getTime() ?? 0);
    const prev = rec.backoffMs ?? 0;
    const delay = ran >= 10_000 || !prev ? 100 : Math.min(prev * 2, 60_000);
    rec.backoffMs = delay;
    if (c.state) {
      c.state.status = 'restarting';
      c.state.restarting = true;
    }
    this.d.store.putContainer(rec);
    this.#scheduleRestart(c.id, delay);
  }

  #scheduleRestart(id: string, delay: number) {
    this.#clearRestartTimer(id);
    const timer = setTimeout(() => {
      this.#restartTimers.delete(id);
      void this.#locked(id, async () => {
        const rec = this.d.store.container(id);
        if (!rec || rec.container.state?.status !== 'restarting' || this.#closing) return;
        rec.container.restartCount += 1;
        this.d.store.putContainer(rec);
        void this.d.bus.publish('taskRestarted', { containerId: id, restartCount: rec.container.restartCount });
        try {
          await this.#start(id);
        } catch (err) {
          this.d.log.warn({ err, id }, 'restart failed');
          const after = this.d.store.container(id);
          if (after?.container.state) {
            after.container.state.status = 'exited';
            after.container.state.restarting = false;
            this.d.store.putContainer(after);
            this.#maybeRestart(after);
          }
        }
      }).catch(() => undefined);
    }, delay);
    timer.unref();
    this.#restartTimers.set(id, timer);
  }

  #clearRestartTimer(id: string) {
    const t = this.#restartTimers.get(id);
    if (t) clearTimeout(t);
    this.#restartTimers.delete(id);
  }

  // ---------------------------------------------------------------- stop, kill, pause, remove

  /** docker stop: the stop signal, SIGKILL after the timeout; remembered as an explicit stop. */
  stop(ref: string, opts: { timeout?: number; signal?: string } = {}): Promise<void> {
    const rec = this.find(ref);
    const id = rec.container.id;
    return this.#locked(id, async () => {
      const r = this.d.store.container(id);
      if (!r?.container.state) return;
      const st = r.container.state;
      r.manuallyStopped = true;
      if (st.status === 'restarting') {
        this.#clearRestartTimer(id);
        st.status = 'exited';
        st.restarting = false;
        this.d.store.putContainer(r);
        this.#notify(id);
        return;
      }
      this.d.store.putContainer(r);
      if (!LIVE.has(st.status)) return;
      const cfg = r.container.config;
      const signal = parseSignal(opts.signal || cfg?.stopSignal || r.imageConfig.StopSignal || '', 15);
      const timeout = opts.timeout ?? (cfg?.stopTimeoutSet ? cfg.stopTimeout : 10);
      const shim = await this.#shim(id);
      if (shim) {
        if (st.status === 'paused') await shim.resume({ id }).catch(() => undefined);
        await stopTask(shim, id, { signal, timeoutMs: timeout < 0 ? DAY : timeout * 1000 }).catch((err) => {
          // Gone from its shim: its exit was handled (the task deleted) meanwhile, which the monitor below waits for.
          if (!isUnavailable(err) && !isNotFound(err)) throw err;
        });
      }
      await this.#monitors.get(id);
      void this.d.bus.publish('taskStopped', { containerId: id });
    });
  }

  async kill(ref: string, signal: string): Promise<void> {
    const { rec, shim } = await this.shimOf(ref);
    const n = parseSignal(signal, 9);
    await shim.kill({ id: rec.container.id, execId: '', signal: n, all: false });
  }

  /** docker restart: a --rm container is restarted too, not removed by its stop (as docker does). */
  async restart(ref: string, timeout?: number): Promise<number> {
    const id = this.find(ref).container.id;
    this.#restarting.add(id);
    try {
      await this.stop(id, { timeout });
    } finally {
      this.#restarting.delete(id);
    }
    return this.start(id);
  }

  async pause(ref: string): Promise<void> {
    const { rec, shim } = await this.shimOf(ref);
    const id = rec.container.id;
    await this.#locked(id, async () => {
      const r = this.d.store.container(id);
      if (r?.container.state?.status === 'paused') throw failedPrecondition(`container ${id} is already paused`);
      await shim.pause({ id });
      if (r?.container.state) {
        r.container.state.status = 'paused';
        r.container.state.paused = true;
        this.d.store.putContainer(r);
      }
    });
  }

  async resume(ref: string): Promise<void> {
    const { rec, shim } = await this.shimOf(ref);
    const id = rec.container.id;
    await this.#locked(id, async () => {
      const r = this.d.store.container(id);
      if (r?.container.state?.status !== 'paused') throw failedPrecondition(`container ${id} is not paused`);
      await shim.resume({ id });
      r.container.state.status = 'running';
      r.container.state.paused = false;
      this.d.store.putContainer(r);
    });
  }

  /** docker rm: a running container only with force (killed first); -v takes its anonymous volumes. */
  remove(ref: string, opts: { force?: boolean; volumes?: boolean } = {}): Promise<void> {
    const rec = this.find(ref);
    const id = rec.container.id;
    return this.#locked(id, async () => {
      const r = this.d.store.container(id);
      if (!r) return;
      const st = r.container.state?.status ?? 'created';
      if (LIVE.has(st) || st === 'restarting') {
        if (!opts.force) {
          throw failedPrecondition(
            `cannot remove container "/${r.container.name}": container is ${st}: stop the container before removing or force remove`,
          );
        }
        this.#removing.add(id);
        try {
          this.#clearRestartTimer(id);
          if (LIVE.has(st)) {
            const shim = await this.#shim(id);
            if (shim) {
              await shim.resume({ id }).catch(() => undefined);
              await shim.kill({ id, execId: '', signal: 9, all: true }).catch(() => undefined);
            }
            await Promise.race([this.#monitors.get(id), sleep(10_000)]);
            const still = this.d.store.container(id);
            if (still?.container.state && LIVE.has(still.container.state.status)) {
              await this.#exited(id, 0, { code: 137, at: new Date(), oom: false });
            }
          }
        } finally {
          this.#removing.delete(id);
        }
      }
      await this.#remove(id, Boolean(opts.volumes));
    });
  }

  /** Removes a container's layer (a layer already gone is fine; one still being prepared, once it is). */
  async #removeSnapshot(c: Container): Promise<void> {
    const preparing = this.#layers.get(c.id);
    if (preparing) {
      this.#layers.delete(c.id);
      await preparing.catch(() => undefined);
    }
    return this.d.snapshots.remove({ key: c.snapshotKey }, THROUGH_RESTART).then(
      () => undefined,
      (err) => {
        if (!isNotFound(err)) throw err;
      },
    );
  }

  /**
   * The container's layer, bundle and directory, removed at once. The two
   * directories hold a few small files (and the log), removed in place: rm's
   * walk through the thread pool, a trip per file, was some 7 ms of `--rm`.
   */
  #removeFiles(c: Container): Promise<void> {
    const layer = this.#removeSnapshot(c);
    try {
      rmSync(c.bundlePath, { recursive: true, force: true });
      rmSync(this.d.layout.containerDir(c.id), { recursive: true, force: true });
    } catch (err) {
      return layer.then(() => Promise.reject(err));
    }
    return layer;
  }

  /**
   * Everything the container holds, in the reverse order of its making; the record goes last.
   * `filesGone`: the removal of its files (#removeFiles), when the exit of a --rm container began it.
   */
  async #remove(id: string, volumes: boolean, filesGone?: Promise<void>) {
    const rec = this.d.store.container(id);
    if (!rec) return;
    const c = rec.container;
    this.#clearRestartTimer(id);
    // Released at its exit already, unless this service restarted since (or it never ran).
    if (!this.#released.delete(id)) await this.#release(id);
    await Promise.all([filesGone ?? this.#removeFiles(c), this.#shimsGoing.get(id)]);
    // Not synced for a --rm container: one that a crash brings back (exited) is removed by reconcile.
    this.d.store.deleteContainer(id, { sync: !(c.config?.autoRemove && c.state?.status === 'exited') });
    this.#monitors.delete(id);
    if (volumes || c.config?.autoRemove) {
      for (const v of rec.anonymousVolumes) {
        await this.d.volumes.remove(v, true).catch((err) => this.d.log.warn({ err, volume: v }, 'volume not removed'));
      }
    }
    void this.d.bus.publish('containerDeleted', { id, name: c.name });
    this.#notify(id);
  }

  rename(ref: string, name: string): Container {
    const rec = this.find(ref);
    const next = name.replace(/^\//, '');
    if (!VALID_NAME.test(next))
      throw invalidArgument(`Invalid container name (${next}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`);
    if (next === rec.container.name)
      throw invalidArgument(`Renaming a container with the same name as its current name`);
    const taken = this.d.store.byName(next);
    if (taken) throw this.#nameConflict(next, taken.container.id);
    const old = rec.container.name;
    rec.container.name = next;
    this.d.store.putContainer(rec);
    void this.d.bus.publish('containerRenamed', { id: rec.container.id, oldName: old, name: next });
    return rec.container;
  }

  async prune(): Promise<{ deleted: string[]; reclaimed: number }> {
    const deleted: string[] = [];
    let reclaimed = 0;
    for (const rec of this.list()) {
      const st = rec.container.state?.status ?? 'created';
      if (st !== 'exited' && st !== 'created' && st !== 'dead') continue;
      const usage = await this.d.snapshots.usage({ key: rec.container.snapshotKey }).catch(() => undefined);
      await this.remove(rec.container.id).then(
        () => {
          deleted.push(rec.container.id);
          reclaimed += Number(usage?.size ?? 0);
        },
        (err) => this.d.log.warn({ err, id: rec.container.id }, 'prune: not removed'),
      );
    }
    return { deleted, reclaimed };
  }

  /** The exec's process: the container's, with the exec's command, env, user, cwd and terminal. */
  async execProcess(
    rec: ContainerRecord,
    req: { args: string[]; env: string[]; user: string; workingDir: string; tty: boolean; privileged: boolean },
  ) {
    if (!req.args.length) throw invalidArgument('No exec command specified');
    const spec = JSON.parse(await readFile(bundleConfig(rec.container.bundlePath), 'utf8')) as Spec;
    const base = spec.process;
    if (!base) throw failedPrecondition('the container has no process');
    let user = base.user;
    if (req.user) {
      // Only a user name needs the image's /etc/passwd and /etc/group.
      const { mounts } = await this.d.snapshots.mounts({ key: rec.container.snapshotKey });
      let u: ReturnType<typeof resolveUser>;
      try {
        u = resolveUser(req.user, imageUsers(layerDirs(mounts)));
      } catch (err) {
        throw invalidArgument((err as Error).message);
      }
      user = { uid: u.uid, gid: u.gid, additionalGids: u.additionalGids.length ? u.additionalGids : undefined };
    }
    const env = new Map<string, string>();
    for (const e of [...(base.env ?? []), ...req.env]) {
      const i = e.indexOf('=');
      if (i > 0) env.set(e.slice(0, i), e);
    }
    const process = {
      ...base,
      args: req.args,
      env: [...env.values()],
      cwd: req.workingDir || base.cwd,
      terminal: req.tty,
      user,
    };
    if (req.privileged && spec.process?.capabilities) {
      const { CAPABILITIES } = await import('@ctr/oci');
      process.capabilities = {
        bounding: [...CAPABILITIES],
        effective: [...CAPABILITIES],
        permitted: [...CAPABILITIES],
        inheritable: [],
        ambient: [],
      };
    }
    return process;
  }

  // ---------------------------------------------------------------- file system: cp and commit

  /** Where a not-running container's file system is mounted for a cp. */
  get #copyDir(): string {
    return join(this.d.config.state, 'cp');
  }

  /**
   * Runs `fn` with an fd of the container's root: the running process's own
   * (`/proc/<pid>/root`), or, for a container that is not running, its
   * snapshot and volumes mounted privately while a start waits.
   */
  async withRoot<T>(ref: string, fn: (rootFd: number, rec: ContainerRecord) => Promise<T>): Promise<T> {
    const id = this.find(ref).container.id;
    const live = this.#liveRoot(id);
    if (live) return this.#using(live.fd, () => fn(live.fd, live.rec));
    return this.#locked(id, async () => {
      const rec = this.d.store.container(id);
      if (!rec) throw notFound(`No such container: ${ref}`);
      const again = this.#liveRoot(id);
      if (again) return this.#using(again.fd, () => fn(again.fd, again.rec));
      const { mounts } = await this.d.snapshots.mounts({ key: rec.container.snapshotKey });
      const dir = join(this.#copyDir, `${id}-${randomBytes(4).toString('hex')}`);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      let rootFd: number;
      try {
        rootFd = mountOffline(
          dir,
          mounts,
          rec.container.mounts.filter((m) => m.type !== 'tmpfs').map((m) => ({ ...m, source: m.hostPath || m.source })),
        );
      } catch (err) {
        await rmdir(dir).catch(() => undefined);
        throw err;
      }
      try {
        return await fn(rootFd, rec);
      } finally {
        unmountOffline(dir, rootFd);
        await rmdir(dir).catch(() => undefined);
      }
    });
  }

  async #using<T>(fd: number, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } finally {
      closeFd(fd);
    }
  }

  /** The root of the container's running process, checked to still be its (by cgroup) after opening. */
  #liveRoot(id: string): { fd: number; rec: ContainerRecord } | undefined {
    const rec = this.d.store.container(id);
    const pid = rec?.container.state?.pid ?? 0;
    if (!rec || !pid || !LIVE.has(rec.container.state?.status ?? '')) return undefined;
    let fd: number;
    try {
      fd = openat2(-100, `/proc/${pid}/root`, O.PATH | O.DIRECTORY, 0, 0);
    } catch {
      return undefined;
    }
    let cgroup = '';
    try {
      cgroup = readFileSync(`/proc/${pid}/cgroup`, 'utf8');
    } catch {
      // exited meanwhile
    }
    if (!cgroup.includes(id)) {
      closeFd(fd);
      return undefined;
    }
    return { fd, rec };
  }

  /**
   * docker commit: the container's own layer (the snapshotter's diff of its
   * snapshot) on top of its image, with the container's config (the image's
   * merged with the run options) and `changes` applied; paused meanwhile
   * unless told not to. Returns the new image's id.
   */
  async commit(
    ref: string,
    o: { repository: string; author: string; comment: string; pause: boolean; changes: string[] },
  ): Promise<string> {
    const rec = this.find(ref);
    const c = rec.container;
    const config = applyChanges(commitConfig(rec), o.changes);
    let paused = false;
    if (o.pause && c.state?.status === 'running') {
      await this.pause(c.id);
      paused = true;
    }
    try {
      const call = this.d.images.import();
      const result = new Promise<string>((resolve, reject) => {
        let id = '';
        call.on('data', (r: { images: { id: string }[] }) => (id = r.images[0]?.id ?? ''));
        call.on('end', () => resolve(id));
        call.on('error', (e) => reject(fromGrpcError(e)));
      });
      result.catch(() => undefined); // awaited below; a failed diff cancels the call first
      call.write({
        part: {
          $case: 'header',
          value: {
            rootfsRef: o.repository,
            path: '',
            labels: {},
            commit: {
              parent: c.imageId,
              configJson: JSON.stringify(config),
              author: o.author,
              comment: o.comment,
              createdBy: [c.path, ...c.args].join(' '),
            },
          },
        },
      });
      try {
        for await (const d of readStream(this.d.snapshots.diff({ key: c.snapshotKey, compression: 'none' }))) {
          if (d.data.length && !call.write({ part: { $case: 'chunk', value: Buffer.from(d.data) } }))
            await new Promise((r) => call.once('drain', r));
        }
      } catch (err) {
        call.cancel();
        throw err;
      }
      call.end();
      const imageId = await result;
      void this.d.bus.publish('containerCommitted', { id: c.id, image: o.repository || imageId });
      return imageId;
    } finally {
      if (paused)
        await this.resume(c.id).catch((err) => this.d.log.warn({ err, id: c.id }, 'resume after commit failed'));
    }
  }

  // ---------------------------------------------------------------- reconcile and shutdown

  /**
   * After a restart of this service: each container's shim is asked for the
   * truth. An exit that happened meanwhile is handled now (its true code,
   * --rm, the restart policy); a running task is watched again; leftovers of
   * work a crash cut short (a shim, a namespace, a snapshot nobody owns) go.
   */
  async reconcile(): Promise<void> {
    const { store, log } = this.d;
    // A cp that a crash cut short left its private mount.
    await cleanCopyMounts(this.#copyDir);
    // Groups (shim.group > 1) as their containers' links say; a container that is released below leaves its group.
    const entries = await readdir(this.d.layout.shimsDir).catch(() => [] as string[]);
    for (const name of entries) {
      const group = await readlink(this.d.layout.shimDir(name)).catch(() => undefined);
      if (group === undefined || !store.container(name)) continue;
      const members = this.#groups.get(group) ?? new Set<string>();
      members.add(name);
      this.#groups.set(group, members);
    }
    const known = new Set<string>();
    for (const rec of store.containers()) {
      const c = rec.container;
      known.add(c.id);
      const st = c.state?.status ?? 'created';
      const shim = await this.#shim(c.id).catch(() => undefined);
      const state = shim ? await shim.state({ id: c.id, execId: '' }).catch(() => undefined) : undefined;
      if (state?.status === Status.STATUS_CREATED) {
        // A start this service did not finish: the init waits and the user's process never ran. Undo it.
        log.info({ id: c.id }, 'undoing a start cut short');
        if (LIVE.has(st))
          await this.#exited(c.id, 0, { code: 128, at: new Date(), oom: false, error: 'the start was cut short' });
        else await this.#release(c.id);
        continue;
      }
      if (LIVE.has(st) || (state && state.status !== Status.STATUS_STOPPED && state.pid)) {
        if (state && state.status !== Status.STATUS_STOPPED && shim) {
          if (!LIVE.has(st) && c.state) {
            // Started, but this service died before it wrote so.
            c.state = { ...c.state, status: 'running', running: true, pid: state.pid, startedAt: new Date() };
            store.putContainer(rec);
          }
          if (state.status === Status.STATUS_PAUSED && c.state) c.state.status = 'paused';
          this.#watch(c.id, shim, state.pid);
          continue;
        }
        if (state && shim) {
          await this.#exited(c.id, 0, {
            code: state.exitStatus,
            at: state.exitedAt ?? new Date(),
            oom: state.oomKilled,
          });
        } else {
          await this.#exited(
            c.id,
            0,
            (await this.#exitOnDisk(c.id)) ?? {
              code: 255,
              at: new Date(),
              oom: false,
              error: 'the shim exited while ctr was down',
            },
          );
        }
        continue;
      }
      if (st === 'exited' && c.config?.autoRemove) {
        // A --rm container whose removal a crash cut short (docker removes these as it starts, too).
        log.info({ id: c.id }, 'removing a --rm container that has exited');
        await this.#remove(c.id, true).catch((err) => log.warn({ err, id: c.id }, 'auto-remove failed'));
        continue;
      }
      if (shim) await this.#dropShim(c.id);
      if (st === 'restarting' && c.state) this.#scheduleRestart(c.id, 100);
    }
    // Shims with no container (a create cut short).
    // Groups last: a link of a container that is gone leaves its group first.
    const left = (await readdir(this.d.layout.shimsDir).catch(() => [] as string[])).sort(
      (a, b) => Number(isGroupShim(a)) - Number(isGroupShim(b)),
    );
    for (const id of left) {
      if (known.has(id)) continue;
      if (isWarmShim(id)) {
        await this.#warm.discard(id);
        continue;
      }
      if (isGroupShim(id)) {
        // A group none of whose containers is left (ended unless it still hosts a task).
        if (!this.#groups.get(id)?.size) await this.#endGroup(id);
        continue;
      }
      log.info({ id }, 'removing a shim that belongs to no container');
      await this.#dropShim(id);
    }
    const { sandboxes } = await this.d.networks.listSandboxes({}, THROUGH_RESTART).catch(() => ({ sandboxes: [] }));
    for (const s of sandboxes) {
      const rec = store.container(s.containerId);
      if (rec && LIVE.has(rec.container.state?.status ?? '')) continue;
      if (!rec && !known.has(s.containerId) && !/^[0-9a-f]{64}$/.test(s.containerId)) continue;
      await this.d.networks.removeSandbox({ containerId: s.containerId }, THROUGH_RESTART).catch(() => undefined);
    }
    await this.#sweepSnapshots();
    this.#warm.fill();
  }

  /**
   * Removes snapshots of creates cut short: labelled for a container that has no record (and
   * whose create is not under way here). Swept at start, and again a little later: a prepare
   * that the service which died had asked for may be done only after the first sweep, and the
   * snapshotter may still be starting (it is tried again until it answers).
   */
  async #sweepSnapshots(attempt = 0): Promise<void> {
    clearTimeout(this.#sweepTimer);
    this.#sweepTimer = undefined;
    let swept = true;
    try {
      const labelled: { key: string; owner: string }[] = [];
      for await (const page of this.d.snapshots.list({ filters: [`labels."${SNAPSHOT_LABEL}"`] })) {
        for (const info of page.info) {
          const owner = info.labels[SNAPSHOT_LABEL];
          if (owner) labelled.push({ key: info.name, owner });
        }
      }
      for (const { key, owner } of labelled) {
        // Checked as each goes: a create may have begun (or ended) since the listing.
        if (this.d.store.container(owner) || this.#creating.has(owner)) continue;
        await this.d.snapshots.remove({ key }, THROUGH_RESTART).catch(() => undefined);
      }
    } catch (err) {
      swept = false;
      if (attempt === 0)
        this.d.log.warn({ err }, 'cannot list snapshots yet; orphans are swept when the snapshotter answers');
    }
    // Once more after a first success; until the snapshotter answers otherwise (a minute at most).
    if (this.#closing || (swept && attempt > 0) || attempt >= 30) return;
    this.#sweepTimer = setTimeout(() => void this.#sweepSnapshots(attempt + 1), 2000);
    this.#sweepTimer.unref();
  }

  /** Starts containers whose policy says so when the engine comes up (docker's daemon start). */
  async startPolicies(): Promise<void> {
    for (const rec of this.d.store.containers()) {
      const policy = rec.container.config?.restartPolicy?.name;
      const st = rec.container.state?.status;
      if (st === 'running' || st === 'paused' || st === 'restarting' || rec.manuallyStopped) continue;
      if (policy === 'always' || policy === 'unless-stopped') {
        await this.start(rec.container.id).catch((err) => this.d.log.warn({ err }, 'start on boot failed'));
      }
    }
  }

  /** A clean stop: containers run on, their shims with them; the warm shims end. */
  async close(): Promise<void> {
    this.#closing = true;
    clearTimeout(this.#sweepTimer);
    for (const t of this.#restartTimers.values()) clearTimeout(t);
    for (const s of this.#shims.values()) s.close();
    await Promise.all([this.#warm.close(), ...this.#shimsGoing.values()]);
  }
}

/** Where a symlink points, or undefined when `path` is not one (or is not there). */
function readlinkOrNone(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

/**
 * A --rm container's layer, mounted volatile (as podman does for --rm): it is
 * thrown away at exit, so nothing written there needs to reach the disk, and
 * its umount no longer waits for a syncfs of the whole file system under it
 * (1-4 ms of every `run --rm` here, far more while anything else writes).
 */
function volatile(m: Mount): Mount {
  if (m.type !== 'overlay' || !m.options.some((o) => o.startsWith('upperdir='))) return m;
  return { ...m, options: [...m.options, 'volatile'] };
}
