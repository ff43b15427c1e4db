/**
 * Warm shims: a few shims booted ahead, hosting nothing, so that a start does
 * not wait for a Node process to boot (a third of a `run --rm` otherwise).
 * A start takes one and binds it to its container (the shim moves its
 * directory to `shims/<id>/`), and another boots in the background.
 *
 * A warm shim lives in `shims/warm-<hex>/` and only as long as the service
 * that started it: a clean stop shuts the spares down, and one whose service
 * died ends by itself (the shim's --warm). The next service's reconcile ends
 * any that are still there, so no idle shim outlives its owner.
 *
 * With shim.zygote (the default) spares are forked from a shim zygote that
 * booted once (apps/shim's zygote.ts): a few ms of CPU each instead of a Node
 * boot's 60, and most of their heap shared with it. It is this service's
 * child and ends with it; the spares it forked end with it while unbound,
 * like spawned ones whose starter died. If it cannot boot, spares are
 * spawned as before.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '@ctr/common/log';
import { renice } from '@ctr/common/priority';
import { connectShim, removeShimDir, type ShimClient, type ShimEngine, ShimZygote, startShim } from '@ctr/shim-client';

export const WARM_PREFIX = 'warm-';

export const isWarmShim = (name: string) => name.startsWith(WARM_PREFIX);

/** A shim that hosts a group of containers (shim.group > 1), bound from a warm one. */
export const GROUP_PREFIX = 'group-';
export const isGroupShim = (name: string) => name.startsWith(GROUP_PREFIX);

const ZYGOTE_RETRY_MS = 60_000;

interface Spare {
  name: string;
  client: ShimClient;
}

export class WarmShims {
  #ready: Spare[] = [];
  #booting = new Set<Promise<void>>();
  /** The pids of spares still booting (at the warm shims' lower priority). */
  #bootingPids = new Set<number>();
  #closed = false;
  /** Where spares are forked from (shim.zygote), booted with the first; undefined while there is none. */
  #zygote: Promise<ShimZygote | undefined> | undefined;

  constructor(
    private readonly engine: () => Promise<ShimEngine>,
    private readonly size: number,
    private readonly log: Logger,
    private readonly useZygote = false,
  ) {}

  /** When a zygote last failed to boot. */
  #zygoteFailed = 0;

  /**
   * The zygote, booted if there is none (or the last one ended). One that
   * cannot boot is logged, and spares boot on their own for a minute before
   * the next try (a zygote that cannot boot would otherwise double each
   * spare's cost).
   */
  #zygoteFor(engine: ShimEngine): Promise<ShimZygote | undefined> {
    if (!this.useZygote || this.#closed || Date.now() - this.#zygoteFailed < ZYGOTE_RETRY_MS)
      return Promise.resolve(undefined);
    this.#zygote ??= ShimZygote.start(engine).then(
      (z) => {
        void z.ended.then(() => {
          if (!this.#closed) this.log.warn({ pid: z.pid }, 'the shim zygote ended; the next spare boots another');
          this.#zygote = undefined;
        });
        return z;
      },
      (err) => {
        this.log.warn({ err }, 'the shim zygote did not start; spares boot on their own for a minute');
        this.#zygoteFailed = Date.now();
        this.#zygote = undefined;
        return undefined;
      },
    );
    return this.#zygote;
  }

  /** Boots spares until the pool is full (none when its size is 0). */
  fill(): void {
    while (!this.#closed && this.#ready.length + this.#booting.size < this.size) {
      const boot: Promise<void> = this.#boot().finally(() => this.#booting.delete(boot));
      this.#booting.add(boot);
    }
  }

  async #boot(): Promise<void> {
    const name = `${WARM_PREFIX}${randomBytes(6).toString('hex')}`;
    let pid = 0;
    try {
      const engine = await this.engine();
      const s = await startShim(engine, name, {
        warm: true,
        zygote: await this.#zygoteFor(engine),
        onSpawn: (p) => {
          pid = p;
          this.#bootingPids.add(p);
        },
      });
      // A few calls while nobody waits: the shim's first answers (its gRPC paths still cold) are slow.
      for (let i = 0; i < 3; i++) await s.client.state({ id: name, execId: '' }).catch(() => undefined);
      const spare = { name, client: s.client };
      if (this.#closed) await this.#end(spare);
      else {
        this.#ready.push(spare);
        // A spare that dies (killed, out of memory) leaves the pool, or the next start would take a dead shim.
        void s.exited.then(() => this.#died(spare));
      }
    } catch (err) {
      this.log.warn({ err }, 'a warm shim did not start');
    } finally {
      this.#bootingPids.delete(pid);
    }
  }

  /**
   * A shim for container `id`, or undefined when there is none to give (the
   * caller boots one itself). A spare still booting is waited for: it is
   * nearer ready than a new one. It is told to move to the container (Bind)
   * and given back at once, on the connection it already answers on (a
   * connection does not care that its socket's path changed): `bound`
   * settles when the move is done, which the caller waits for before the
   * shim hosts anything; if it fails, the spare ends.
   */
  async take(id: string): Promise<{ client: ShimClient; bound: Promise<void> } | undefined> {
    if (!this.#ready.length && this.#booting.size) {
      // A start waits for it now: it boots at full priority from here.
      for (const pid of this.#bootingPids) renice(0, pid);
      await Promise.race(this.#booting);
    }
    const spare = this.#ready.shift();
    // Not refilled here: the caller does (fill) once its start waits on the shim. Spawning one is some
    // 2-3 ms of this process's main thread (fork copies its page tables), which the start's network
    // and bundle would otherwise wait behind.
    if (!spare) return undefined;
    const bound = spare.client.bind({ id }).then(
      () => undefined,
      async (err) => {
        this.log.warn({ err, shim: spare.name }, 'a warm shim could not be bound');
        await this.#end(spare);
        throw err;
      },
    );
    bound.catch(() => undefined);
    return { client: spare.client, bound };
  }

  async #died(spare: Spare) {
    const at = this.#ready.indexOf(spare);
    if (at < 0) return; // taken, or ended by close()
    this.#ready.splice(at, 1);
    this.log.warn({ shim: spare.name }, 'a warm shim died; another is started');
    spare.client.close();
    await removeShimDir(await this.engine(), spare.name).catch(() => undefined);
    this.fill();
  }

  /** A spare of an earlier run of this service, found in the state dir: ended. */
  async discard(name: string): Promise<void> {
    await this.#end({ name, client: connectShim(await this.engine(), name) });
  }

  async #end(spare: Spare): Promise<void> {
    await spare.client.shutdown({ id: spare.name, now: true }).catch(() => undefined);
    spare.client.close();
    await removeShimDir(await this.engine(), spare.name).catch(() => undefined);
  }

  /** Ends every spare (this service is stopping cleanly). */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled(this.#booting);
    await Promise.allSettled(this.#ready.splice(0).map((s) => this.#end(s)));
    const z = await this.#zygote;
    z?.close();
    await z?.ended;
  }
}
