/**
 * An isolated engine for a test: its own root and state dirs, instance name
 * and embedded NATS, started from the built apps exactly as a user starts
 * ctrd. stop() is the engine's own teardown (ctrd's SIGTERM), followed by the
 * leak check: what the engine leaves behind fails the test.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { openSync, closeSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ContainersService } from '@ctr/api/containers/v1/containers';
import { ServiceState, type ServiceStatus, SupervisorService } from '@ctr/api/supervisor/v1/supervisor';
import { layout } from '@ctr/common/config';
import { type ApiClient, dial, type ServiceDef } from '@ctr/common/grpc';
import { processAlive } from '@ctr/sys/proc';
import { assertNoLeaks, findLeaks, sweepLeaks } from './leaks.js';
import { type RunResult, randomInstance, repoRoot, run, signal, sleep, waitFor } from './util.js';

export interface EngineOptions {
  instance?: string;
  /** An external NATS URL instead of the embedded server. */
  eventsUrl?: string;
  /** The default bridge's subnet (inside 100.64.0.0/10). */
  subnet?: string;
  env?: NodeJS.ProcessEnv;
  /** The engine's config file (e.g. registry mirrors); empty by default. */
  config?: Record<string, unknown>;
}

/** One event as `ctrctl events --format json` prints it. */
export interface PastEvent {
  Type: string;
  Action: string;
  Actor: { ID: string; Attributes: Record<string, string> };
  time: number;
  timeNano: number;
  topic: string;
}

export const CTRD_MAIN = join(repoRoot, 'apps/supervisor/dist/main.js');
/** ctrctl as a user runs it: its bundle. */
export const CTRCTL_MAIN = join(repoRoot, 'apps/ctrctl/dist/bundle/main.cjs');

export class TestEngine {
  readonly root: string;
  readonly state: string;
  readonly paths: ReturnType<typeof layout>;
  #ctrd: ChildProcess | undefined;
  #clients: { close(): void }[] = [];

  private constructor(
    readonly instance: string,
    readonly dir: string,
    private readonly opts: EngineOptions,
  ) {
    this.root = join(dir, 'root');
    this.state = join(dir, 'state');
    this.paths = layout({ root: this.root, state: this.state });
  }

  static async start(opts: EngineOptions = {}): Promise<TestEngine> {
    const instance = opts.instance ?? randomInstance();
    const dir = join('/tmp', `ctr-${instance}`);
    await rm(dir, { recursive: true, force: true });
    await mkdir(dir, { recursive: true });
    const engine = new TestEngine(instance, dir, opts);
    try {
      await engine.startCtrd();
    } catch (err) {
      await engine.stop({ checkLeaks: false }).catch(() => undefined);
      throw err;
    }
    return engine;
  }

  /** The environment that points ctrd and ctrctl at this engine. */
  get env(): NodeJS.ProcessEnv {
    return {
      ...process.env,
      ...this.opts.env,
      CTR_ROOT: this.root,
      CTR_STATE: this.state,
      CTR_INSTANCE: this.instance,
      CTR_CONFIG: join(this.dir, 'config.json'),
      // docker's credentials of the host are not the test's.
      DOCKER_CONFIG: join(this.dir, 'docker-config'),
      CTR_DEFAULT_SUBNET: this.opts.subnet ?? this.subnets.default,
      CTR_NETWORK_POOL: `${this.subnets.pool},24`,
      ...(this.opts.eventsUrl ? { CTR_EVENTS_URL: this.opts.eventsUrl } : {}),
    };
  }

  /**
   * This instance's address space, from a hash of its name so that engines
   * running side by side do not overlap: the default bridge's /24 inside
   * 100.72.0.0/13, and a /20 inside 100.80.0.0/12 for the networks tests
   * create (`userSubnet(i)`) and for `network create` without --subnet.
   */
  get subnets(): { default: string; pool: string } {
    const h = createHash('sha256').update(this.instance).digest();
    const d = ((h[0] << 8) | h[1]) & 0x7ff;
    const p = h[2];
    return {
      default: `100.${72 + (d >> 8)}.${d & 255}.0/24`,
      pool: `100.${80 + (p >> 4)}.${(p & 15) << 4}.0/20`,
    };
  }

  /** The i-th /24 (0-15) of this instance's block, for networks a test creates (an automatic subnet skips those in use). */
  userSubnet(i: number): string {
    const [a, b, c] = this.subnets.pool.split('/')[0].split('.').map(Number);
    return `${a}.${b}.${c + i}.0/24`;
  }

  get ctrdPid(): number | undefined {
    return this.#ctrd?.exitCode === null ? this.#ctrd.pid : undefined;
  }

  /** Starts ctrd (which adopts whatever is still running) and waits until every service is healthy. */
  async startCtrd(): Promise<void> {
    await writeFile(join(this.dir, 'config.json'), `${JSON.stringify(this.opts.config ?? {})}\n`);
    const log = openSync(join(this.dir, 'ctrd.log'), 'a');
    try {
      this.#ctrd = spawn(process.execPath, [CTRD_MAIN], { env: this.env, stdio: ['ignore', log, log], detached: true });
    } finally {
      closeSync(log);
    }
    const child = this.#ctrd;
    await waitFor(
      async () => {
        if (child.exitCode !== null) throw new Error(`ctrd exited ${child.exitCode}: ${await this.ctrdLog()}`);
        const services = await this.services().catch(() => []);
        const expected = this.opts.eventsUrl ? 4 : 5;
        return services.length === expected && services.every((s) => s.state === ServiceState.SERVICE_STATE_HEALTHY);
      },
      'ctrd and its services to be healthy',
      { timeoutMs: 30_000 },
    );
  }

  async ctrdLog(): Promise<string> {
    return readFile(join(this.dir, 'ctrd.log'), 'utf8').catch(() => '');
  }

  supervisor(): ApiClient<typeof SupervisorService> {
    const c = dial(SupervisorService, this.paths.supervisorSocket);
    this.#clients.push(c);
    return c;
  }

  /** A client of one of the engine's services, closed at stop. */
  client<D extends ServiceDef>(definition: D, service: string): ApiClient<D> {
    const c = dial(definition, this.paths.serviceSocket(service));
    this.#clients.push(c);
    return c;
  }

  async services(): Promise<ServiceStatus[]> {
    const c = dial(SupervisorService, this.paths.supervisorSocket);
    try {
      return (await c.listServices({}, { timeoutMs: 2000 })).services;
    } finally {
      c.close();
    }
  }

  async service(name: string): Promise<ServiceStatus> {
    const s = (await this.services()).find((x) => x.name === name);
    if (!s) throw new Error(`no service ${name}`);
    return s;
  }

  /**
   * Events the engine kept, as `ctrctl events --since ... --until 0s
   * --format json` prints them (docker's fields), filtered like docker.
   */
  async pastEvents(filters: string[] = [], since = '10m'): Promise<PastEvent[]> {
    const r = await this.ctrctl([
      'events',
      '--since',
      since,
      '--until',
      '0s',
      ...filters.flatMap((f) => ['--filter', f]),
      '--format',
      'json',
    ]);
    if (r.code !== 0) throw new Error(`ctrctl events exited ${r.code}: ${r.stderr}`);
    return r.stdout
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as PastEvent);
  }

  /**
   * SIGKILLs a service and waits until ctrd has it healthy again under a new
   * pid; `whileDown` runs right after the kill (what must happen during the outage).
   */
  async crashService(
    name: string,
    opts: { timeoutMs?: number; whileDown?: () => Promise<void> } = {},
  ): Promise<{ before: ServiceStatus; after: ServiceStatus; ms: number }> {
    const { timeoutMs = 20_000, whileDown } = opts;
    const before = await this.service(name);
    const killedAt = Date.now();
    signal(before.pid, 'SIGKILL');
    await whileDown?.();
    const after = await waitFor(
      async () => {
        const s = await this.service(name);
        return s.pid !== before.pid && s.state === ServiceState.SERVICE_STATE_HEALTHY ? s : undefined;
      },
      `${name} to come back`,
      { timeoutMs, intervalMs: 20 },
    );
    return { before, after, ms: Date.now() - killedAt };
  }

  /** Runs ctrctl against this engine. */
  ctrctl(
    args: string[],
    opts: { input?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
  ): Promise<RunResult> {
    return run(process.execPath, [CTRCTL_MAIN, ...args], {
      input: opts.input,
      env: { ...this.env, ...opts.env },
      timeoutMs: opts.timeoutMs ?? 60_000,
    });
  }

  /**
   * Removes every container through the engine's own API (rm -f -v), as a
   * user tears down; ctrd's SIGTERM then leaves nothing running (a clean stop
   * of ctrd keeps containers, as containerd's does).
   */
  async removeContainers(): Promise<void> {
    const api = dial(ContainersService, this.paths.serviceSocket('container-service'));
    try {
      const { containers } = await api.list({ all: true, filters: [], size: false }, { timeoutMs: 10_000 });
      for (const c of containers) {
        await api.delete({ ref: c.id, force: true, removeVolumes: true }, { timeoutMs: 30_000 }).catch(() => undefined);
      }
    } finally {
      api.close();
    }
  }

  /** Kills ctrd without letting it stop anything (the services keep running). */
  async killCtrd(): Promise<void> {
    const child = this.#ctrd;
    if (!child?.pid || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    signal(child.pid, 'SIGKILL');
    await exited;
  }

  /**
   * The engine's own teardown: SIGTERM to ctrd (a ctrd is started first if
   * the test killed it, so that it adopts and stops everything), then the
   * leak check, then the dirs are removed.
   */
  async stop({ checkLeaks = true } = {}): Promise<void> {
    for (const c of this.#clients) c.close();
    this.#clients = [];
    if (!this.ctrdPid) {
      const pidFile = await readFile(this.paths.supervisorPidFile, 'utf8').catch(() => '');
      const orphan = pidFile ? (JSON.parse(pidFile) as { pid: number; startTime: number }) : undefined;
      if (!orphan || !(await processAlive(orphan.pid, orphan.startTime))) {
        await this.startCtrd().catch(() => undefined);
      }
    }
    await this.removeContainers().catch(() => undefined);
    const child = this.#ctrd;
    if (child?.pid && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      signal(child.pid, 'SIGTERM');
      await Promise.race([exited, sleep(30_000)]);
      if (child.exitCode === null) signal(child.pid, 'SIGKILL');
    }
    const scope = { instance: this.instance, dirs: [this.dir] };
    // Processes a killed service left as zombies of PID 1 vanish shortly; give them a moment.
    try {
      if (checkLeaks) {
        await waitFor(async () => (await findLeaks(scope)).length === 0, 'the engine to leave nothing behind', {
          timeoutMs: 5000,
        }).catch(() => assertNoLeaks(scope));
      }
    } catch (err) {
      // The test fails with the list; the host does not keep what the engine's teardown missed.
      await sweepLeaks(scope);
      throw err;
    } finally {
      await rm(this.dir, { recursive: true, force: true });
    }
  }
}
