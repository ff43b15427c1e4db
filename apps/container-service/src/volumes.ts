/**
 * Named volumes, local driver: a directory `<root>/volumes/<name>/_data`
 * (docker's layout), made on `volume create` or on first use by a container,
 * kept until removed.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import type { Volume } from '@ctr/api/containers/v1/containers';
import { failedPrecondition, invalidArgument, notFound } from '@ctr/common/errors';
import type { EventBus } from '@ctr/common/events';
import { duBytes } from './usage.js';
import type { Store, VolumeRecord } from './store.js';

const NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]+$/;

export class Volumes {
  constructor(
    private readonly store: Store,
    private readonly root: string,
    private readonly bus: EventBus,
  ) {}

  dir(name: string): string {
    return join(this.root, 'volumes', name);
  }

  /** docker volume create: idempotent for an existing name; an empty name makes an anonymous volume. */
  async create(
    name: string,
    opts: { driver?: string; labels?: Record<string, string>; options?: Record<string, string> } = {},
  ): Promise<VolumeRecord> {
    const anonymous = !name;
    const volName = name || randomBytes(32).toString('hex');
    if (!NAME.test(volName)) {
      throw invalidArgument(
        `create ${volName}: "${volName}" includes invalid characters for a local volume name, only "[a-zA-Z0-9][a-zA-Z0-9_.-]" are allowed. If you intended to pass a host directory, use absolute path`,
      );
    }
    const driver = opts.driver || 'local';
    if (driver !== 'local')
      throw notFound(`create ${volName}: error looking up volume plugin ${driver}: plugin not found`);
    const unknown = Object.keys(opts.options ?? {});
    if (unknown.length) throw invalidArgument(`create ${volName}: invalid option key: "${unknown[0]}"`);
    const record: VolumeRecord = {
      name: volName,
      driver,
      mountpoint: join(this.dir(volName), '_data'),
      labels: opts.labels ?? {},
      options: opts.options ?? {},
      createdAt: new Date().toISOString(),
      anonymous,
    };
    await mkdir(record.mountpoint, { recursive: true, mode: 0o755 });
    const { volume, created } = this.store.addVolume(record);
    if (created) void this.bus.publish('volumeCreated', { name: volName, driver });
    return volume;
  }

  list(): VolumeRecord[] {
    return this.store.volumes();
  }

  get(name: string): VolumeRecord {
    const v = this.store.volume(name);
    if (!v) throw notFound(`get ${name}: no such volume`);
    return v;
  }

  /** Containers whose mounts use the volume. */
  users(name: string): string[] {
    return this.store
      .containers()
      .filter((r) => r.container.mounts.some((m) => m.type === 'volume' && m.source === name))
      .map((r) => r.container.id);
  }

  async remove(name: string, force = false): Promise<void> {
    const v = this.store.volume(name);
    if (!v) {
      if (force) return;
      throw notFound(`get ${name}: no such volume`);
    }
    const users = this.users(name);
    if (users.length) throw failedPrecondition(`remove ${name}: volume is in use - [${users.join(', ')}]`);
    this.store.deleteVolume(name);
    await rm(this.dir(name), { recursive: true, force: true });
    void this.bus.publish('volumeRemoved', { name });
  }

  /** docker volume prune: unused anonymous volumes, or every unused one with `all`. */
  async prune(all: boolean, filters: string[]): Promise<{ deleted: string[]; reclaimed: number }> {
    const labels = filters.filter((f) => f.startsWith('label=')).map((f) => f.slice(6));
    const deleted: string[] = [];
    let reclaimed = 0;
    for (const v of this.store.volumes()) {
      if (!all && !v.anonymous) continue;
      if (!labels.every((l) => matchLabel(v.labels, l))) continue;
      if (this.users(v.name).length) continue;
      reclaimed += await duBytes(v.mountpoint);
      await this.remove(v.name);
      deleted.push(v.name);
    }
    return { deleted, reclaimed };
  }

  async toApi(v: VolumeRecord, size = false): Promise<Volume> {
    return {
      name: v.name,
      driver: v.driver,
      mountpoint: v.mountpoint,
      labels: v.labels,
      options: v.options,
      createdAt: new Date(v.createdAt),
      usedBy: this.users(v.name),
      size: size ? BigInt(await duBytes(v.mountpoint)) : -1n,
    };
  }
}

export function matchLabel(labels: Record<string, string>, filter: string): boolean {
  const eq = filter.indexOf('=');
  if (eq < 0) return filter in labels;
  return labels[filter.slice(0, eq)] === filter.slice(eq + 1);
}
