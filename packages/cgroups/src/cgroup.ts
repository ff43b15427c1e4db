/**
 * One cgroup, at the same relative path in every hierarchy that serves a
 * controller (v1), or in the unified hierarchy (v2). Limits, stats, OOM
 * count, freeze/thaw and kill-all speak the same language on both.
 */
import { mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { type CgroupLayout, V1_CONTROLLERS, type V1Controller } from './layout.js';
import { type Resources, type Stats, sharesToWeight } from './resources.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** v1 reports "unlimited" as a page-rounded LONG_MAX. */
const V1_UNLIMITED = 2n ** 62n;

/*
 * The kernel serves cgroupfs from memory, so its files are read and written in
 * place: a trip through libuv's thread pool for each file of a dozen v1
 * hierarchies made every task's create some milliseconds longer.
 */
async function readText(path: string): Promise<string | undefined> {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

async function put(path: string, data: string): Promise<void> {
  writeFileSync(path, data);
}

async function makeDir(path: string): Promise<void> {
  mkdirSync(path, { recursive: true });
}

/** Reads `key value` lines (cpu.stat, memory.stat, memory.events, memory.oom_control). */
export function parseKeyValues(text = ''): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const line of text.split('\n')) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^\d+$/.test(v)) out.set(k, BigInt(v));
  }
  return out;
}

export class Cgroup {
  private constructor(
    readonly layout: CgroupLayout,
    /** Relative path, e.g. ctr-default/3f4e... */
    readonly path: string,
  ) {
    if (path.startsWith('/') || path.split('/').includes('..')) throw new Error(`invalid cgroup path ${path}`);
  }

  static at(layout: CgroupLayout, path: string): Cgroup {
    return new Cgroup(layout, path);
  }

  get v2(): boolean {
    return this.layout.mode === 'v2';
  }

  /** The directory serving a controller (v1), or the unified directory (v2). */
  dir(controller?: V1Controller): string | undefined {
    if (this.v2) return join(this.layout.unified as string, this.path);
    const mount = this.layout.v1[controller ?? 'memory'];
    return mount ? join(mount, this.path) : undefined;
  }

  /** Every distinct directory of this cgroup (v1 controllers can share a hierarchy). */
  dirs(): string[] {
    if (this.v2) return [this.dir() as string];
    return [...new Set(V1_CONTROLLERS.map((c) => this.dir(c)).filter((d): d is string => !!d))];
  }

  async #write(controller: V1Controller, file: string, value: string | number): Promise<void> {
    const dir = this.dir(controller);
    if (!dir) throw new Error(`the ${controller} controller is not mounted`);
    await put(join(dir, file), String(value));
  }

  async #read(controller: V1Controller, file: string): Promise<string | undefined> {
    const dir = this.dir(controller);
    return dir ? readText(join(dir, file)) : undefined;
  }

  /** Creates the cgroup (and its parents) and applies the limits. */
  async create(resources: Resources = {}): Promise<void> {
    if (this.v2) await this.#enableControllers();
    await Promise.all(this.dirs().map((d) => makeDir(d)));
    if (!this.v2) await this.#inheritCpuset();
    await this.apply(resources);
  }

  /** v2: every ancestor must delegate the controllers to its children. */
  async #enableControllers() {
    const root = this.layout.unified as string;
    const available = (await readText(join(root, 'cgroup.controllers')))?.split(/\s+/) ?? [];
    const wanted = ['cpu', 'cpuset', 'memory', 'pids'].filter((c) => available.includes(c));
    let dir = root;
    for (const part of this.path.split('/').slice(0, -1)) {
      await put(join(dir, 'cgroup.subtree_control'), wanted.map((c) => `+${c}`).join(' ')).catch(() => undefined);
      dir = join(dir, part);
      await makeDir(dir);
    }
    await put(join(dir, 'cgroup.subtree_control'), wanted.map((c) => `+${c}`).join(' ')).catch(() => undefined);
  }

  /** v1 cpuset: a new group starts with no cpus or mems and refuses tasks; copy the parent's down the path. */
  async #inheritCpuset() {
    const mount = this.layout.v1.cpuset;
    if (!mount) return;
    let dir = mount;
    for (const part of this.path.split('/')) {
      const parent = dir;
      dir = join(dir, part);
      for (const f of ['cpuset.cpus', 'cpuset.mems']) {
        if (!(await readText(join(dir, f)))) await put(join(dir, f), (await readText(join(parent, f))) ?? '');
      }
    }
  }

  async apply(r: Resources): Promise<void> {
    if (this.v2) return this.#applyV2(r);
    if (r.memory !== undefined || r.memorySwap !== undefined) {
      // memsw must stay >= memory: lift it first, then set memory, then memsw.
      const hasSwapFile = (await this.#read('memory', 'memory.memsw.limit_in_bytes')) !== undefined;
      if (hasSwapFile) await this.#write('memory', 'memory.memsw.limit_in_bytes', -1);
      await this.#write('memory', 'memory.limit_in_bytes', r.memory ? r.memory : -1);
      if (hasSwapFile && r.memorySwap !== undefined && r.memorySwap !== 0) {
        await this.#write('memory', 'memory.memsw.limit_in_bytes', r.memorySwap);
      } else if (hasSwapFile && r.memory && r.memorySwap === undefined) {
        // docker: without --memory-swap, swap may be as large as memory.
        await this.#write('memory', 'memory.memsw.limit_in_bytes', r.memory * 2);
      }
    }
    if (r.memoryReservation !== undefined)
      await this.#write('memory', 'memory.soft_limit_in_bytes', r.memoryReservation || -1);
    if (r.cpuPeriod !== undefined) await this.#write('cpu', 'cpu.cfs_period_us', r.cpuPeriod);
    if (r.cpuQuota !== undefined) await this.#write('cpu', 'cpu.cfs_quota_us', r.cpuQuota > 0 ? r.cpuQuota : -1);
    if (r.cpuShares) await this.#write('cpu', 'cpu.shares', r.cpuShares);
    if (r.cpusetCpus) await this.#write('cpuset', 'cpuset.cpus', r.cpusetCpus);
    if (r.cpusetMems) await this.#write('cpuset', 'cpuset.mems', r.cpusetMems);
    if (r.pidsLimit !== undefined) await this.#write('pids', 'pids.max', r.pidsLimit > 0 ? r.pidsLimit : 'max');
  }

  async #applyV2(r: Resources) {
    const dir = this.dir() as string;
    const w = (file: string, v: string | number) => put(join(dir, file), String(v));
    if (r.memory !== undefined) await w('memory.max', r.memory || 'max');
    if (r.memorySwap !== undefined && r.memory) {
      // v2 limits swap alone: docker's memory+swap total minus memory.
      await w('memory.swap.max', r.memorySwap < 0 ? 'max' : Math.max(0, r.memorySwap - r.memory));
    }
    if (r.memoryReservation !== undefined) await w('memory.low', r.memoryReservation);
    if (r.cpuQuota !== undefined || r.cpuPeriod !== undefined) {
      await w('cpu.max', `${r.cpuQuota && r.cpuQuota > 0 ? r.cpuQuota : 'max'} ${r.cpuPeriod ?? 100_000}`);
    }
    if (r.cpuShares) await w('cpu.weight', sharesToWeight(r.cpuShares));
    if (r.cpusetCpus) await w('cpuset.cpus', r.cpusetCpus);
    if (r.cpusetMems) await w('cpuset.mems', r.cpusetMems);
    if (r.pidsLimit !== undefined) await w('pids.max', r.pidsLimit > 0 ? r.pidsLimit : 'max');
  }

  /** Moves a process into the cgroup, in every hierarchy. */
  /**
   * Moves `pid` in. Synchronous writes on purpose: a new container's init
   * waits for this before it goes on, and a dozen v1 hierarchies written
   * one thread-pool hop at a time cost it ten milliseconds or more.
   */
  async addProcess(pid: number): Promise<void> {
    for (const d of this.dirs()) writeFileSync(join(d, 'cgroup.procs'), String(pid));
  }

  async pids(): Promise<number[]> {
    const text = await readText(join(this.dirs()[0], 'cgroup.procs'));
    return (text ?? '').split('\n').filter(Boolean).map(Number);
  }

  async stats(): Promise<Stats> {
    if (this.v2) return this.#statsV2();
    const cpu = parseKeyValues(await this.#read('cpu', 'cpu.stat'));
    const mem = parseKeyValues(await this.#read('memory', 'memory.stat'));
    const oom = parseKeyValues(await this.#read('memory', 'memory.oom_control'));
    const limit = BigInt((await this.#read('memory', 'memory.limit_in_bytes')) ?? '0');
    const pidsMax = (await this.#read('pids', 'pids.max')) ?? 'max';
    return {
      cpuUsageNanos: BigInt((await this.#read('cpuacct', 'cpuacct.usage')) ?? '0'),
      cpuThrottledPeriods: Number(cpu.get('nr_throttled') ?? 0n),
      cpuThrottledNanos: cpu.get('throttled_time') ?? 0n,
      memoryUsage: Number((await this.#read('memory', 'memory.usage_in_bytes')) ?? 0),
      memoryLimit: limit >= V1_UNLIMITED ? 0 : Number(limit),
      memoryCache: Number(mem.get('cache') ?? 0n),
      pidsCurrent: Number((await this.#read('pids', 'pids.current')) ?? 0),
      pidsLimit: pidsMax === 'max' ? 0 : Number(pidsMax),
      oomKills: Number(oom.get('oom_kill') ?? 0n),
    };
  }

  async #statsV2(): Promise<Stats> {
    const dir = this.dir() as string;
    const r = (f: string) => readText(join(dir, f));
    const cpu = parseKeyValues(await r('cpu.stat'));
    const mem = parseKeyValues(await r('memory.stat'));
    const events = parseKeyValues(await r('memory.events'));
    const max = (await r('memory.max')) ?? 'max';
    const pidsMax = (await r('pids.max')) ?? 'max';
    return {
      cpuUsageNanos: (cpu.get('usage_usec') ?? 0n) * 1000n,
      cpuThrottledPeriods: Number(cpu.get('nr_throttled') ?? 0n),
      cpuThrottledNanos: (cpu.get('throttled_usec') ?? 0n) * 1000n,
      memoryUsage: Number((await r('memory.current')) ?? 0),
      memoryLimit: max === 'max' ? 0 : Number(max),
      memoryCache: Number(mem.get('file') ?? 0n),
      pidsCurrent: Number((await r('pids.current')) ?? 0),
      pidsLimit: pidsMax === 'max' ? 0 : Number(pidsMax),
      oomKills: Number(events.get('oom_kill') ?? 0n),
    };
  }

  /** Freezes every task (docker pause) and waits until the kernel says frozen. */
  async freeze(): Promise<void> {
    await this.#setFrozen(true);
  }

  async thaw(): Promise<void> {
    await this.#setFrozen(false);
  }

  async #setFrozen(frozen: boolean, timeoutMs = 5000) {
    const until = Date.now() + timeoutMs;
    if (this.v2) {
      const dir = this.dir() as string;
      await put(join(dir, 'cgroup.freeze'), frozen ? '1' : '0');
      while (parseKeyValues(await readText(join(dir, 'cgroup.events'))).get('frozen') !== (frozen ? 1n : 0n)) {
        if (Date.now() > until) throw new Error(`cgroup ${this.path} did not ${frozen ? 'freeze' : 'thaw'}`);
        await sleep(5);
      }
      return;
    }
    const want = frozen ? 'FROZEN' : 'THAWED';
    for (;;) {
      await this.#write('freezer', 'freezer.state', want);
      if ((await this.#read('freezer', 'freezer.state')) === want) return;
      if (Date.now() > until) throw new Error(`cgroup ${this.path} did not reach ${want}`);
      await sleep(5);
    }
  }

  /** Signals every task; for SIGKILL the group is frozen first so nothing forks past it. */
  async killAll(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    if (this.v2 && signal === 'SIGKILL') {
      const kill = join(this.dir() as string, 'cgroup.kill');
      if ((await readText(kill)) !== undefined) return put(kill, '1');
    }
    // An empty group (a stopped task's, at its delete) has nothing to freeze, and nothing can fork into it.
    const pids = await this.pids();
    if (!pids.length) return;
    const freezable = signal === 'SIGKILL' && (this.v2 || !!this.layout.v1.freezer);
    if (freezable) await this.freeze().catch(() => undefined);
    for (const pid of freezable ? await this.pids() : pids) {
      try {
        process.kill(pid, signal);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
    }
    if (freezable) await this.thaw().catch(() => undefined);
  }

  /** Removes the cgroup from every hierarchy at once; a hierarchy still busy (a process just exiting) is asked again. */
  async destroy(timeoutMs = 5000): Promise<void> {
    const until = Date.now() + timeoutMs;
    const remove = async (d: string) => {
      for (;;) {
        try {
          rmdirSync(d);
          return;
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') return;
          if (code !== 'EBUSY' || Date.now() > until) throw err;
          await sleep(2);
        }
      }
    };
    const results = await Promise.allSettled(this.dirs().map(remove));
    const failed = results.find((r) => r.status === 'rejected');
    if (failed) throw (failed as PromiseRejectedResult).reason;
  }

  /** The parent cgroup (e.g. the instance's), for removing it once empty. */
  parent(): Cgroup | undefined {
    const p = dirname(this.path);
    return p === '.' ? undefined : new Cgroup(this.layout, p);
  }
}
