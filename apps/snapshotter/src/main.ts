/** snapshotter: overlay2 snapshots and layer application; knows nothing of images or containers. */
import { mkdir, rm, stat } from 'node:fs/promises';
import { randomUUID } from 'node:crypto';
import type { ServerReadableStream } from '@grpc/grpc-js';
import {
  type ApplyLayerHeader,
  type ApplyLayerRequest,
  Kind,
  type SnapshotInfo,
  SnapshotsService,
} from '@ctr/api/snapshots/v1/snapshots';
import { runDaemon } from '@ctr/common/daemon';
import type { EventBus } from '@ctr/common/events';
import { alreadyExists, canceled, failedPrecondition, internal, invalidArgument } from '@ctr/common/errors';
import { implement } from '@ctr/common/grpc';
import { checkDigest } from '@ctr/common/reference';
import { AT, closeFd, O, openat2, syncfsAsync } from '@ctr/sys';
import { settleDeferred } from '@ctr/tar/extract';
import { ApplyError, applyLayer } from './apply/apply.js';
import { diffLayer } from './diff.js';
import { usage } from './usage.js';
import { EXTRACT_PREFIX, matchFilters, type SnapshotRecord, SnapshotStore } from './store.js';

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

function reserved(key: string) {
  if (key.startsWith(EXTRACT_PREFIX)) throw invalidArgument(`snapshot keys starting ${EXTRACT_PREFIX} are reserved`);
}

/** The header, then the layer's bytes (unless the header names a file to read). */
async function readApplyRequest(call: ServerReadableStream<ApplyLayerRequest, unknown>) {
  const it = call[Symbol.asyncIterator]() as AsyncIterator<ApplyLayerRequest>;
  const first = await it.next();
  const part = first.done ? undefined : first.value.part;
  const header = part?.$case === 'header' ? part.value : undefined;
  if (!header) throw invalidArgument('ApplyLayer starts with a header');
  async function* chunks(): AsyncGenerator<Uint8Array> {
    for (;;) {
      const n = await it.next();
      if (n.done) return;
      if (n.value.part?.$case !== 'chunk') throw invalidArgument('ApplyLayer takes one header, then data chunks');
      yield n.value.part.value;
    }
  }
  return { header, chunks: chunks() };
}

/**
 * A layer applied as the committed snapshot `name`: into a fresh active
 * snapshot with a reserved key, committed only once every file is on disk and
 * the diff id matched. On any failure that snapshot is removed; after a crash,
 * start-up removes it. Two applies of one name at once: the first commit wins,
 * the other answers ALREADY_EXISTS and leaves nothing.
 *
 * `afterParent` with a parent not yet committed (a layer from a file): the
 * layer is unpacked at once, into a snapshot without a parent, then waits for
 * the parent's commit, settles the directories it took from the parents, and
 * is committed onto it. Should the parents have a symlink or a file where the
 * layer assumed a directory, it is unpacked again over them. The client keeps
 * its stream open while it wants the layer: its end (or the call's
 * cancellation, `signal`) withdraws it, and the answer comes once nothing of
 * it is left.
 */
async function apply(
  store: SnapshotStore,
  h: ApplyLayerHeader,
  chunks: AsyncIterable<Uint8Array>,
  signal: AbortSignal,
) {
  if (!h.name) throw invalidArgument('ApplyLayer needs the name of the snapshot to create');
  reserved(h.name);
  if (h.expectedDiffId) checkDigest(h.expectedDiffId, 'diff id');
  if (store.has(h.name)) throw alreadyExists(`snapshot ${h.name} already exists`);
  if (h.path && !(await stat(h.path).catch(() => undefined))?.isFile())
    throw failedPrecondition(`layer file ${h.path} does not exist or is not a file`);
  if (h.follow && (!h.path || h.size <= 0n)) throw invalidArgument('a followed layer needs its path and its size');
  const early = h.afterParent && !!h.parent && !!h.path && !h.follow && !store.has(h.parent);
  const key = `${EXTRACT_PREFIX}${randomUUID()}/${h.name}`;
  const rec = await store.create('active', key, early ? '' : h.parent, {});
  try {
    const job = {
      root: store.fsDir(rec.id),
      lowers: store.parents(rec).map((p) => store.fsDir(p.id)),
      pendingLowers: early,
      expectedDiffId: h.expectedDiffId,
      path: h.path || undefined,
      follow: h.follow ? { size: Number(h.size) } : undefined,
    };
    const run = async (j: typeof job) => {
      try {
        return await applyLayer(j, chunks);
      } catch (err) {
        if (err instanceof ApplyError)
          throw err.badLayer ? invalidArgument(err.message) : internal(`applying the layer failed: ${err.message}`);
        throw err;
      }
    };
    const withdrawn = new AbortController();
    if (early) {
      const onCancel = () => withdrawn.abort(canceled('the client went away'));
      if (signal.aborted) onCancel();
      else signal.addEventListener('abort', onCancel, { once: true });
      void (async () => {
        for await (const _ of chunks) break;
      })()
        .catch(() => undefined)
        .finally(() => withdrawn.abort(canceled('the client withdrew the layer')));
    }
    let result = await run(job);
    if (early) {
      await store.whenCommitted(h.parent, withdrawn.signal);
      const parent = store.get(h.parent);
      const lowers = [parent, ...store.parents(parent)].map((p) => store.fsDir(p.id));
      if (settleDeferred(job.root, lowers, result.deferred)) await flush(job.root);
      else {
        await rm(job.root, { recursive: true, force: true });
        await mkdir(job.root, { mode: 0o755 });
        result = await run({ ...job, lowers, pendingLowers: false });
      }
    }
    await store.commit(h.name, key, h.labels, result.usage, early ? h.parent : undefined);
    return result;
  } catch (err) {
    await store.remove(key);
    throw err;
  }
}

/** The file system holding `dir` written out (a layer applied beside its parents is not, until they are in). */
async function flush(dir: string) {
  const fd = openat2(AT.FDCWD, dir, O.RDONLY | O.DIRECTORY, 0, 0);
  try {
    await syncfsAsync(fd);
  } finally {
    closeFd(fd);
  }
}

export function snapshotsApi(store: SnapshotStore, bus: EventBus) {
  const mountsOf = (key: string) => ({
    mounts: store.mounts(key).map((m) => ({ ...m, target: '' })),
  });
  return implement(SnapshotsService, {
    prepare: async ({ key, parent, labels }) => {
      reserved(key);
      await store.create('active', key, parent, labels);
      void bus.publish('snapshotPrepared', { key, parent });
      return mountsOf(key);
    },
    view: async ({ key, parent, labels }) => {
      reserved(key);
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
      if (await store.remove(key, { background: true })) void bus.publish('snapshotRemoved', { key });
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
      const r = store.get(key);
      const u = r.usage ?? (await usage(store.fsDir(r.id)));
      return { size: BigInt(u.size), inodes: BigInt(u.inodes) };
    },
    cleanup: async () => ({ removed: await store.cleanup() }),
    diff: async ({ key, compression }, call) => {
      if (compression !== '' && compression !== 'gzip' && compression !== 'none')
        throw invalidArgument(`unknown compression ${JSON.stringify(compression)}: gzip or none`);
      const r = store.get(key);
      if (r.kind === 'view') throw failedPrecondition(`snapshot ${key} is a view: it has no layer of its own`);
      const write = (data: Buffer) =>
        new Promise<void>((resolve, reject) => {
          if (call.cancelled) return reject(canceled('the client went away'));
          if (call.write({ data, diffId: '', digest: '', size: 0n })) return resolve();
          call.once('drain', resolve);
          call.once('cancelled', () => reject(canceled('the client went away')));
        });
      const d = await diffLayer(store.fsDir(r.id), compression === 'none' ? 'none' : 'gzip', write);
      call.write({ data: Buffer.alloc(0), diffId: d.diffId, digest: d.digest, size: BigInt(d.size) });
    },
    applyLayer: async (call) => {
      const { header, chunks } = await readApplyRequest(call);
      const gone = new AbortController();
      call.once('cancelled', () => gone.abort(canceled('the client went away')));
      const r = await apply(store, header, chunks, gone.signal);
      void bus.publish('snapshotCommitted', { key: '', name: header.name });
      return { diffId: r.diffId, size: BigInt(r.size) };
    },
  });
}

const stores: SnapshotStore[] = [];
await runDaemon({
  name: 'snapshotter',
  api: [SnapshotsService],
  services: async (ctx) => {
    const store = await SnapshotStore.open(ctx.config.root, (err) =>
      ctx.log.warn({ err }, 'cannot mark the snapshots directory chattr +T (its trees are not spread over the disk)'),
    );
    const interrupted = await store.removeInterruptedApplies();
    if (interrupted.length) ctx.log.info({ removed: interrupted }, 'removed layer applies a crash interrupted');
    const strays = await store.cleanup();
    if (strays.length) ctx.log.info({ removed: strays }, 'removed directories no snapshot owns');
    stores.push(store);
    return [{ definition: SnapshotsService, implementation: snapshotsApi(store, ctx.bus) }];
  },
  stop: async () => {
    for (const s of stores) await s.settle();
  },
});
