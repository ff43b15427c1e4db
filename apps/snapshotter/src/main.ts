/** snapshotter: overlay2 snapshots and layer application; knows nothing of images or containers. */
import { lstat, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Kind, type SnapshotInfo, SnapshotsService } from '@ctr/api/snapshots/v1/snapshots';
import { runDaemon } from '@ctr/common/daemon';
import type { EventBus } from '@ctr/common/events';
import { invalidArgument } from '@ctr/common/errors';
import { implement } from '@ctr/common/grpc';
import { matchFilters, type SnapshotRecord, SnapshotStore } from './store.js';

const KIND: Record<SnapshotRecord['kind'], Kind> = {
  view: Kind.KIND_VIEW,
  active: Kind.KIND_ACTIVE,
  committed: Kind.KIND_COMMITTED,
};

function info(r: SnapshotRecord): SnapshotInfo {
  return {
    name: r.name,
    parent: r.parent,
    kind: KIND[r.kind],
    labels: r.labels,
    createdAt: new Date(r.createdAt),
    updatedAt: new Date(r.updatedAt),
  };
}

/** Bytes (allocated blocks) and inodes of a tree, hard links counted once. */
async function usage(dir: string): Promise<{ size: number; inodes: number }> {
  const seen = new Set<string>();
  let size = 0;
  const walk = async (d: string) => {
    for (const name of await readdir(d)) {
      const p = join(d, name);
      const st = await lstat(p, { bigint: false });
      const key = `${st.dev}:${st.ino}`;
      if (!seen.has(key)) {
        seen.add(key);
        size += st.blocks * 512;
      }
      if (st.isDirectory()) await walk(p);
    }
  };
  await walk(dir);
  return { size, inodes: seen.size };
}

export function snapshotsApi(store: SnapshotStore, bus: EventBus) {
  const mountsOf = (key: string) => ({
    mounts: store.mounts(key).map((m) => ({ ...m, target: '' })),
  });
  return implement(SnapshotsService, {
    prepare: async ({ key, parent, labels }) => {
      await store.create('active', key, parent, labels);
      void bus.publish('snapshotPrepared', { key, parent });
      return mountsOf(key);
    },
    view: async ({ key, parent, labels }) => {
      await store.create('view', key, parent, labels);
      return mountsOf(key);
    },
    mounts: async ({ key }) => mountsOf(key),
    commit: async ({ name, key, labels }) => {
      await store.commit(name, key, labels);
      void bus.publish('snapshotCommitted', { key, name });
      return {};
    },
    remove: async ({ key }) => {
      if (await store.remove(key)) void bus.publish('snapshotRemoved', { key });
      return {};
    },
    stat: async ({ key }) => info(store.get(key)),
    update: async ({ info: i, updateMask }) => {
      if (!i) throw invalidArgument('update needs the snapshot info');
      return info(await store.updateLabels(i.name, i.labels, updateMask));
    },
    list: async ({ filters }, call) => {
      const all = store.list().filter((r) => matchFilters(r, filters));
      for (let i = 0; i < all.length; i += 100) call.write({ info: all.slice(i, i + 100).map(info) });
    },
    usage: async ({ key }) => {
      const u = await usage(store.fsDir(store.get(key).id));
      return { size: BigInt(u.size), inodes: BigInt(u.inodes) };
    },
    cleanup: async () => ({ removed: await store.cleanup() }),
  });
}

await runDaemon({
  name: 'snapshotter',
  services: async (ctx) => {
    const store = await SnapshotStore.open(ctx.config.root);
    const strays = await store.cleanup();
    if (strays.length) ctx.log.info({ removed: strays }, 'removed directories no snapshot owns');
    return [{ definition: SnapshotsService, implementation: snapshotsApi(store, ctx.bus) }];
  },
});
