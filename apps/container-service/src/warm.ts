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
 * A shim whose container is gone comes back to the pool when there is room
 * (Unbind: the shim makes itself warm again), so `run --rm` after `run --rm`
 * boots no shim at all: a boot is some 200 ms of CPU, as much as the rest of
 * the run together on two CPUs. A start whose container is expected back
 * soon (a --rm one) leaves the refill for a while, in case it is.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '@ctr/common/log';
import { connectShim, removeShimDir, type ShimClient, type ShimEngine, startShim } from '@ctr/shim-client';

export const WARM_PREFIX = 'warm-';

export const isWarmShim = (name: string) => name.startsWith(WARM_PREFIX);

/** A shim that hosts a group of containers (shim.group > 1), bound from a warm one. */
export const GROUP_PREFIX = 'group-';
export const isGroupShim = (name: string) => name.startsWith(GROUP_PREFIX);

interface Spare {
  name: string;
  client: ShimClient;
}

/** How long a start whose shim should come back (--rm) leaves the pool empty before it boots a spare. */
export const REFILL_DELAY_MS = 1000;

export class WarmShims {
  #ready: Spare[] = [];
  #booting = new Set<Promise<void>>();
  #refill: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    private readonly engine: () => Promise<ShimEngine>,
    private readonly size: number,
    private readonly log: Logger,
  ) {}

  /** Boots spares until the pool is full (none when its size is 0). */
  fill(): void {
    clearTimeout(this.#refill);
    this.#refill = undefined;
    while (!this.#closed && this.#ready.length + this.#booting.size < this.size) {
      const boot: Promise<void> = this.#boot().finally(() => this.#booting.delete(boot));
      this.#booting.add(boot);
    }
  }

  async #boot(): Promise<void> {
    const name = `${WARM_PREFIX}${randomBytes(6).toString('hex')}`;
    try {
      const s = await startShim(await this.engine(), name, { warm: true });
      // A few calls while nobody waits: the shim's first answers (its gRPC paths still cold) are slow.
      for (let i = 0; i < 3; i++) await s.client.state({ id: name, execId: '' }).catch(() => undefined);
      // A shim made warm again meanwhile may have filled the pool: this one is not needed then.
      if (this.#closed || this.#ready.length >= this.size) await this.#end({ name, client: s.client });
      else this.#ready.push({ name, client: s.client });
    } catch (err) {
      this.log.warn({ err }, 'a warm shim did not start');
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
  async take(
    id: string,
    opts: { returnsSoon?: boolean } = {},
  ): Promise<{ client: ShimClient; bound: Promise<void> } | undefined> {
    if (!this.#ready.length && this.#booting.size) await Promise.race(this.#booting);
    const spare = this.#ready.shift();
    if (opts.returnsSoon && spare) this.#refill ??= setTimeout(() => this.fill(), REFILL_DELAY_MS).unref();
    else this.fill();
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

  /**
   * A shim that hosts nothing any more (its task deleted), given back: it
   * becomes a spare when the pool has room (a spare still booting then ends
   * as it is up) and the shim agrees (it was started by this service, and has
   * not hosted too many containers yet). False when it did not: the caller
   * shuts it down.
   */
  async give(client: ShimClient): Promise<boolean> {
    if (this.#closed || this.#ready.length >= this.size) return false;
    const name = `${WARM_PREFIX}${randomBytes(6).toString('hex')}`;
    try {
      await client.unbind({ name, starter: process.pid });
    } catch (err) {
      this.log.debug({ err }, 'a shim was not made warm again');
      return false;
    }
    if (this.#closed || this.#ready.length >= this.size) {
      await this.#end({ name, client });
      return true;
    }
    this.#ready.push({ name, client });
    if (this.#ready.length >= this.size) {
      clearTimeout(this.#refill);
      this.#refill = undefined;
    }
    return true;
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
    clearTimeout(this.#refill);
    await Promise.allSettled(this.#booting);
    await Promise.allSettled(this.#ready.splice(0).map((s) => this.#end(s)));
  }
}
