/**
 * The supervision loop. Each unit is adopted if a previous ctrd left it
 * running, else started. A watcher reads liveness every 100 ms, and health
 * every 2 s from a healthy unit (every 500 ms from one that is not); a unit
 * that dies is restarted at once the first time and with exponential
 * backoff if it keeps dying, and the restart is logged and published as
 * service.restarted. A unit that stays unhealthy is killed and
 * restarted the same way.
 */
import { ServiceState, type ServiceStatus } from '@ctr/api/supervisor/v1/supervisor';
import { notFound } from '@ctr/common/errors';
import type { EventBus } from '@ctr/common/events';
import type { Logger } from '@ctr/common/log';
import type { ProcessRecord } from './records.js';
import type { Unit } from './units.js';

const LIVENESS_MS = 100;
/** Health is read this often from a unit that is not healthy (starting, restarted, failing)... */
const HEALTH_MS = 500;
/** ...and this often from one that is: each probe is a gRPC call both sides pay for, all day long. */
const HEALTHY_MS = 2000;
/** Crashes closer together than this count toward the backoff. */
const CRASH_WINDOW_MS = 10_000;
const MAX_BACKOFF_MS = 10_000;
/** How long a unit may be starting or unhealthy before it is killed and restarted. */
const UNHEALTHY_LIMIT_MS = 30_000;
const STOP_GRACE_MS = 10_000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Tracked {
  unit: Unit;
  state: ServiceState;
  /** Since when the unit is in its current state. */
  since: number;
  message: string;
  crashes: number[];
  /** A restart (or stop) is under way: the watcher leaves the unit alone. */
  busy: boolean;
  extra: Partial<ProcessRecord>;
}

export class Supervisor {
  readonly #units = new Map<string, Tracked>();
  #timer: NodeJS.Timeout | undefined;
  #ticks = 0;
  #bus: EventBus | undefined;
  #stopping = false;

  constructor(private readonly log: Logger) {}

  /** Events go out once the bus exists (NATS itself is supervised before it). */
  attachBus(bus: EventBus) {
    this.#bus = bus;
  }

  /** Adopts the unit if it is still running from a previous ctrd, else starts it; waits until healthy. */
  async add(unit: Unit, extra: Partial<ProcessRecord> = {}, readyTimeoutMs = 15_000): Promise<void> {
    const t: Tracked = {
      unit,
      state: ServiceState.SERVICE_STATE_STARTING,
      since: Date.now(),
      message: '',
      crashes: [],
      busy: true,
      extra,
    };
    this.#units.set(unit.name, t);
    unit.proc.onChildExit(() => void this.#check(t));
    if (await unit.proc.adopt()) {
      this.log.info({ service: unit.name, pid: unit.proc.pid }, 'adopted running service');
    } else {
      await unit.proc.start(0, extra);
      this.log.info({ service: unit.name, pid: unit.proc.pid }, 'started service');
      this.#publish('serviceStarted', { name: unit.name, pid: unit.proc.pid });
    }
    const outcome = await this.#waitHealthy(unit, readyTimeoutMs);
    if (outcome === 'exited') throw new Error(`${unit.name} exited during start-up; see ${unit.proc.spec.logFile}`);
    if (outcome === 'timeout') throw new Error(`${unit.name} did not become healthy within ${readyTimeoutMs} ms`);
    this.#setState(t, ServiceState.SERVICE_STATE_HEALTHY);
    t.busy = false;
  }

  /** Probes until the unit answers healthy, its process dies, or the time is up. */
  async #waitHealthy(unit: Unit, timeoutMs: number): Promise<'healthy' | 'exited' | 'timeout'> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      if (await unit.probe()) return 'healthy';
      if (!(await unit.proc.alive())) return 'exited';
      if (Date.now() > until) return 'timeout';
      await sleep(25);
    }
  }

  watch() {
    this.#timer = setInterval(() => void this.#tick(), LIVENESS_MS);
  }

  async #tick() {
    const tick = ++this.#ticks;
    await Promise.all(
      [...this.#units.values()].map((t) => {
        const every = t.state === ServiceState.SERVICE_STATE_HEALTHY ? HEALTHY_MS : HEALTH_MS;
        return this.#check(t, tick % (every / LIVENESS_MS) === 0);
      }),
    );
  }

  async #check(t: Tracked, probeHealth = false) {
    if (t.busy || this.#stopping) return;
    if (!(await t.unit.proc.alive())) {
      if (t.busy || this.#stopping) return;
      await this.#restart(t, 'exited');
      return;
    }
    if (!probeHealth) return;
    const healthy = await t.unit.probe();
    if (t.busy) return;
    if (healthy) {
      if (t.state !== ServiceState.SERVICE_STATE_HEALTHY) this.#setState(t, ServiceState.SERVICE_STATE_HEALTHY);
    } else if (t.state === ServiceState.SERVICE_STATE_HEALTHY) {
      this.#setState(t, ServiceState.SERVICE_STATE_UNHEALTHY, 'health check failed');
    } else if (Date.now() - t.since > UNHEALTHY_LIMIT_MS) {
      this.log.warn({ service: t.unit.name }, 'unhealthy for too long, killing it');
      t.busy = true;
      await t.unit.proc.kill('SIGKILL');
      t.busy = false;
    }
  }

  async #restart(t: Tracked, reason: string) {
    t.busy = true;
    try {
      const { unit } = t;
      const oldPid = unit.proc.pid;
      const now = Date.now();
      t.crashes = t.crashes.filter((c) => now - c < CRASH_WINDOW_MS);
      const delay = t.crashes.length === 0 ? 0 : Math.min(100 * 2 ** (t.crashes.length - 1), MAX_BACKOFF_MS);
      t.crashes.push(now);
      this.log.warn({ service: unit.name, pid: oldPid, reason, delayMs: delay }, 'service exited, restarting');
      this.#publish('serviceExited', { name: unit.name, pid: oldPid, exitCode: -1, signal: '' });
      this.#setState(t, ServiceState.SERVICE_STATE_RESTARTING, reason);
      if (delay) await sleep(delay);
      if (this.#stopping) return;
      const restarts = (unit.proc.record?.restarts ?? 0) + 1;
      await unit.proc.start(restarts, t.extra);
      this.log.info({ service: unit.name, pid: unit.proc.pid, restarts }, 'service restarted');
      this.#publish('serviceRestarted', { name: unit.name, pid: unit.proc.pid, restarts });
      this.#setState(t, ServiceState.SERVICE_STATE_STARTING);
    } catch (err) {
      this.log.error({ service: t.unit.name, err }, 'restart failed');
      this.#setState(t, ServiceState.SERVICE_STATE_RESTARTING, (err as Error).message);
    } finally {
      t.busy = false;
    }
  }

  /** A restart the user asked for: a clean stop, then a start. */
  async restart(name: string): Promise<ServiceStatus> {
    const t = this.#units.get(name);
    if (!t) throw notFound(`no such service: ${name}`);
    if (t.busy) return this.status(t);
    t.busy = true;
    try {
      const restarts = (t.unit.proc.record?.restarts ?? 0) + 1;
      this.#setState(t, ServiceState.SERVICE_STATE_RESTARTING, 'restart requested');
      await t.unit.proc.stop(STOP_GRACE_MS);
      await t.unit.proc.start(restarts, t.extra);
      this.#publish('serviceRestarted', { name, pid: t.unit.proc.pid, restarts });
      this.#setState(t, ServiceState.SERVICE_STATE_STARTING);
      // If it does not come up, the watcher takes over (restart with backoff, or kill when stuck).
      if ((await this.#waitHealthy(t.unit, 15_000)) === 'healthy')
        this.#setState(t, ServiceState.SERVICE_STATE_HEALTHY);
    } finally {
      t.busy = false;
    }
    return this.status(t);
  }

  #setState(t: Tracked, state: ServiceState, message = '') {
    if (t.state !== state) this.log.info({ service: t.unit.name, state: ServiceState[state] }, 'service state');
    t.state = state;
    t.since = Date.now();
    t.message = message;
  }

  #publish(...args: Parameters<EventBus['publish']>) {
    void this.#bus?.publish(...args);
  }

  status(t: Tracked): ServiceStatus {
    const rec = t.unit.proc.record;
    return {
      name: t.unit.name,
      pid: rec?.pid ?? 0,
      state: t.state,
      restarts: rec?.restarts ?? 0,
      startedAt: rec ? new Date(rec.startedAt) : undefined,
      version: rec?.version ?? '',
      socket: '',
      message: t.message,
    };
  }

  list(): ServiceStatus[] {
    return [...this.#units.values()].map((t) => this.status(t));
  }

  /**
   * Stops the services (SIGTERM, SIGKILL after the grace period), all at
   * once, then the units named in `last` (NATS, which the others publish to).
   */
  async shutdown(last: string[]): Promise<void> {
    this.#stopping = true;
    clearInterval(this.#timer);
    const all = [...this.#units.values()];
    const stop = async (t: Tracked) => {
      t.busy = true;
      await t.unit.proc.stop(STOP_GRACE_MS);
      this.#setState(t, ServiceState.SERVICE_STATE_STOPPED);
      t.unit.close();
    };
    await Promise.all(all.filter((t) => !last.includes(t.unit.name)).map(stop));
    for (const t of all.filter((t) => last.includes(t.unit.name))) await stop(t);
  }
}
