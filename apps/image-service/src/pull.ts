/**
 * Pull: resolve the reference, fetch the index or manifest, pick the
 * platform, fetch the config, then the layers, a few at a time, each handed
 * to the snapshotter the moment it is in: the snapshotter unpacks the layers
 * side by side and commits each once its parent is. The bottom layer, whose
 * download nothing else would overlap, is unpacked as it downloads: the
 * snapshotter reads its ingest file as it grows (through a second name,
 * which stays when the download is committed or fails). Everything fetched
 * is held by a lease until the image record points at it. A failure removes what the
 * pull stored and no image holds; a cancellation (the caller went away, the
 * service was killed) keeps the partial downloads, which the next pull
 * resumes from where they stopped.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { CtrError, canceled, failedPrecondition, isAlreadyExists, isNotFound } from '@ctr/common/errors';
import { formatReference, type Reference } from '@ctr/common/reference';
import { type Images, LAYER_LABEL, type ResolvedImage } from './images.js';
import type { ImageRecord } from './metadata.js';
import {
  chainIds,
  type Descriptor,
  type Manifest,
  type Platform,
  parseConfig,
  parseDocument,
  pickManifest,
} from './oci.js';
import type { Repository } from './registry/client.js';

export type TransferState =
  | 'resolving'
  | 'waiting'
  | 'downloading'
  | 'verifying'
  | 'extracting'
  | 'uploading'
  | 'exists'
  | 'done';

export interface Progress {
  /** Undefined for the whole transfer. */
  desc?: Descriptor;
  state: TransferState;
  offset: number;
  total: number;
  message?: string;
}

export interface PullOptions {
  ref: Reference;
  repo: Repository;
  platform: Platform;
  unpack: boolean;
  maxConcurrent: number;
  signal: AbortSignal;
  progress: (p: Progress) => void;
}

/** Runs at most `n` tasks at a time, in the order they were queued. */
export function limiter(n: number) {
  let running = 0;
  const queue: (() => void)[] = [];
  return async <T>(fn: () => Promise<T>): Promise<T> => {
    if (running >= n) await new Promise<void>((r) => queue.push(r));
    running++;
    try {
      return await fn();
    } finally {
      running--;
      queue.shift()?.();
    }
  };
}

const MAX_CONFIG_BYTES = 16 << 20;
const BLOB_RETRIES = 5;

export async function pull(images: Images, opts: PullOptions): Promise<ImageRecord> {
  const { ref, repo, signal, progress } = opts;
  const name = formatReference(ref);
  const started = performance.now();
  const ingests: string[] = [];
  try {
    return await images.withLease('pull', async (lease) => {
      progress({ state: 'resolving', offset: 0, total: 0, message: name });
      const top = await repo.manifest(ref.digest ?? (ref.tag as string), signal);
      const doc = parseDocument(top.bytes, top.mediaType);
      const target: Descriptor = { mediaType: doc.mediaType, digest: top.digest, size: top.bytes.length };
      await images.putBlob(lease, top.digest, top.bytes);

      let manifestDesc = target;
      let manifest: Manifest;
      if (doc.kind === 'index') {
        manifestDesc = pickManifest(doc.index, opts.platform);
        const m = await repo.manifest(manifestDesc.digest, signal);
        const inner = parseDocument(m.bytes, m.mediaType || manifestDesc.mediaType);
        if (inner.kind !== 'manifest') throw failedPrecondition(`${manifestDesc.digest}: an index inside an index`);
        manifest = inner.manifest;
        await images.putBlob(lease, m.digest, m.bytes);
      } else {
        manifest = doc.manifest;
      }

      const configBytes = await fetchSmallBlob(images, repo, lease, manifest.config, signal);
      const config = parseConfig(configBytes, manifest.layers.length);
      const diffIds = config.rootfs.diff_ids;
      const chains = chainIds(diffIds);
      for (const l of manifest.layers) progress({ desc: l, state: 'waiting', offset: 0, total: l.size });

      // Downloads a few at a time; each layer is applied once it is in, beside its parents.
      const inner = new AbortController();
      const onAbort = () => inner.abort();
      signal.addEventListener('abort', onAbort);
      const limit = limiter(Math.max(1, opts.maxConcurrent || 3));
      const applied: Promise<void>[] = [];
      const downloads: Promise<unknown>[] = [];
      let first: Promise<unknown> = Promise.resolve();
      try {
        manifest.layers.forEach((layer, i) => {
          let following: Promise<FollowedApply | undefined> | undefined;
          const fetch = async () => {
            // Queued behind a layer that failed: nothing to start.
            if (inner.signal.aborted) throw canceled('the pull was canceled');
            const follow =
              i === 0 && opts.unpack
                ? (dataPath: string) => {
                    following = followApply(images, lease, layer, chains[0], diffIds[0], dataPath);
                    following.catch(() => undefined);
                  }
                : undefined;
            await fetchBlob(
              images,
              repo,
              lease,
              layer,
              inner.signal,
              progress,
              (ingest) => ingests.push(ingest),
              follow,
            );
          };
          // The bottom layer downloads alone (and is unpacked as it does): the others have the
          // time its unpacking takes to come in.
          const fetched = i === 0 ? limit(fetch) : first.then(() => limit(fetch));
          // A failed download settles once the snapshotter has given up what it read of it.
          const downloaded = fetched.catch(async (err) => {
            await (await following?.catch(() => undefined))?.abandon();
            throw err;
          });
          if (i === 0) first = downloaded.catch(() => undefined);
          downloads.push(downloaded);
          const parentApplied = applied[i - 1] ?? Promise.resolve();
          applied.push(
            downloaded.then(async () => {
              images.log.debug({ layer: layer.digest, ms: Math.round(performance.now() - started) }, 'layer fetched');
              if (!opts.unpack) return progress({ desc: layer, state: 'done', offset: layer.size, total: layer.size });
              // No follow when the blob was there already, or its file was gone before it could be linked.
              const followed = await following?.catch(() => undefined);
              if (followed) await followed.finish(progress);
              else
                await applyLayer(images, lease, layer, chains[i], chains[i - 1] ?? '', diffIds[i], progress, {
                  parentApplied,
                  signal: inner.signal,
                });
              images.log.debug({ layer: layer.digest, ms: Math.round(performance.now() - started) }, 'layer applied');
            }),
          );
        });
        // The first failure stops the other downloads.
        await Promise.all(
          applied.map((p) =>
            p.catch((err) => {
              inner.abort();
              throw err;
            }),
          ),
        );
      } catch (err) {
        inner.abort();
        // The downloads too: those queued behind the bottom layer start when it fails, and the
        // ingests to remove are only all known once every one has settled.
        await Promise.allSettled([...applied, ...downloads]);
        throw err;
      } finally {
        signal.removeEventListener('abort', onAbort);
      }

      const record = images.meta.putImage(name, target);
      progress({ state: 'done', offset: 0, total: 0, message: target.digest });
      return record;
    });
  } catch (err) {
    const cancelled = signal.aborted || (err instanceof CtrError && err.kind === 'Canceled');
    if (!cancelled) {
      // A failed pull stores nothing: its partial downloads go, and GC takes what no image holds.
      for (const ingest of ingests) await images.content.abort(ingest).catch(() => undefined);
      await images.collect().catch((gcErr) => images.log.warn({ err: gcErr }, 'cleanup after a failed pull'));
    }
    if (cancelled && !(err instanceof CtrError && err.kind === 'Canceled')) throw canceled('the pull was canceled');
    throw err;
  }
}

async function fetchSmallBlob(
  images: Images,
  repo: Repository,
  lease: string,
  desc: Descriptor,
  signal: AbortSignal,
): Promise<Buffer> {
  if (await images.leaseContent(lease, desc.digest)) return images.content.read(desc.digest);
  if (desc.size > MAX_CONFIG_BYTES)
    throw failedPrecondition(`blob ${desc.digest} is ${desc.size} bytes, over the ${MAX_CONFIG_BYTES}-byte limit`);
  const { res } = await repo.blob(desc.digest, 0, signal);
  const bytes = Buffer.from(await res.arrayBuffer());
  await images.putBlob(lease, desc.digest, bytes).catch((err) => {
    throw failedPrecondition(`blob ${desc.digest}: ${(err as Error).message}`);
  });
  return bytes;
}

/**
 * Fetches a blob into the content store, resuming an earlier ingest of it
 * (HTTP Range from the ingest's offset) and again after a dropped connection.
 * Concurrent fetches of one digest (two pulls sharing a layer) run once.
 * `onOpen` is given the ingest's file once it is open, before a byte of this
 * fetch is written (not at all when the blob was there, or another fetch of
 * it wrote it).
 */
export async function fetchBlob(
  images: Images,
  repo: Repository,
  lease: string,
  desc: Descriptor,
  signal: AbortSignal,
  progress: (p: Progress) => void,
  onIngest: (ref: string) => void,
  onOpen?: (dataPath: string) => void,
): Promise<void> {
  if (await images.leaseContent(lease, desc.digest)) {
    progress({ desc, state: 'exists', offset: desc.size, total: desc.size });
    return;
  }
  const ref = `layer-${desc.digest}`;
  onIngest(ref);
  await images.content.once(desc.digest, async () => {
    let w: Awaited<ReturnType<Images['content']['writer']>>;
    try {
      w = await images.content.writer(ref, desc.digest, desc.size);
    } catch (err) {
      if (isAlreadyExists(err)) return;
      throw err;
    }
    onOpen?.(w.dataPath);
    try {
      let failures = 0;
      let last = 0;
      while (w.offset < desc.size) {
        if (signal.aborted) throw canceled('the pull was canceled');
        const before = w.offset;
        progress({ desc, state: 'downloading', offset: w.offset, total: desc.size });
        try {
          const { res, offset } = await repo.blob(desc.digest, w.offset, signal);
          let skip = w.offset - offset;
          for await (const chunk of res.body ?? []) {
            let data = chunk as Uint8Array;
            if (skip > 0) {
              const n = Math.min(skip, data.length);
              skip -= n;
              data = data.subarray(n);
              if (!data.length) continue;
            }
            await w.write(data);
            const now = Date.now();
            if (now - last > 100) {
              last = now;
              progress({ desc, state: 'downloading', offset: w.offset, total: desc.size });
            }
          }
        } catch (err) {
          if (signal.aborted) throw canceled('the pull was canceled');
          // The registry's own refusals are final; dropped connections are retried from where they stopped.
          if (err instanceof CtrError && err.kind !== 'Unavailable') throw err;
          images.log.warn(
            { digest: desc.digest, offset: w.offset, err: (err as Error).message },
            'blob download interrupted',
          );
        }
        if (w.offset === before && ++failures > BLOB_RETRIES)
          throw failedPrecondition(
            `blob ${desc.digest}: the registry stopped sending at ${w.offset} of ${desc.size} bytes`,
          );
        if (w.offset < desc.size) await sleep(100 * 2 ** Math.min(failures, 5), undefined, { signal }).catch(() => {});
      }
      progress({ desc, state: 'verifying', offset: w.offset, total: desc.size });
      await w.commit(desc.size, desc.digest).catch((err) => {
        throw failedPrecondition(
          `blob ${desc.digest} from ${repo.ref.domain} failed verification: ${(err as Error).message}`,
        );
      });
    } finally {
      await w.close();
    }
  });
  // A coalesced fetch may have failed in the other caller; make sure it is there.
  if (!(await images.content.has(desc.digest))) throw failedPrecondition(`blob ${desc.digest} was not fetched`);
}

interface FollowedApply {
  /** Says the download is done and waits for the snapshot (its own failure, if it failed). */
  finish(progress: (p: Progress) => void): Promise<void>;
  /** Says the download is over short of the layer, and waits for the snapshotter to drop it. */
  abandon(): Promise<void>;
}

/** How long a layer apply given up on has to answer before its call is cancelled. */
const ABANDON_WAIT_MS = 10_000;

/**
 * ApplyLayer of a layer with no parent from its ingest file as the download
 * writes it (the snapshotter follows the file). Undefined when its snapshot
 * exists already.
 */
async function followApply(
  images: Images,
  lease: string,
  layer: Descriptor,
  chain: string,
  diffId: string,
  dataPath: string,
): Promise<FollowedApply | undefined> {
  // Linked first: a small layer's download may be done (and its file moved) within the checks.
  const path = await images.content.followLink(dataPath);
  const exists = await images
    .leaseSnapshot(lease, chain)
    .then(() => snapshotExists(images, chain))
    .catch(async (err) => {
      await images.content.dropFollowLink(path);
      throw err;
    });
  if (exists) {
    await images.content.dropFollowLink(path);
    return undefined;
  }
  const { stream, response } = images.snapshots.applyLayer();
  const settled = response
    .then(
      () => undefined,
      (err) => err,
    )
    .finally(() => images.content.dropFollowLink(path).catch(() => undefined));
  stream.write({
    part: {
      $case: 'header',
      value: {
        name: chain,
        parent: '',
        mediaType: layer.mediaType,
        expectedDiffId: diffId,
        path,
        labels: { [LAYER_LABEL]: diffId },
        follow: true,
        size: BigInt(layer.size),
        afterParent: false,
      },
    },
  });
  let ended = false;
  const end = () => {
    if (ended) return false;
    ended = true;
    stream.end();
    return true;
  };
  return {
    async finish(progress) {
      progress({ desc: layer, state: 'extracting', offset: layer.size, total: layer.size });
      end();
      const err = await settled;
      if (err && !isAlreadyExists(err)) throw err;
      progress({ desc: layer, state: 'done', offset: layer.size, total: layer.size, message: 'Pull complete' });
    },
    async abandon() {
      if (!end()) return;
      // A snapshotter that does not answer is not waited for long: the call is cancelled, which it
      // notices (or, were it down, its next start drops the apply).
      const timer = setTimeout(() => stream.cancel(), ABANDON_WAIT_MS);
      await settled;
      clearTimeout(timer);
    },
  };
}

const snapshotExists = (images: Images, chain: string) =>
  images.snapshots
    .stat({ key: chain }, { retryMs: 5000 })
    .then(() => true)
    .catch(() => false);

async function applyLayer(
  images: Images,
  lease: string,
  layer: Descriptor,
  chain: string,
  parent: string,
  diffId: string,
  progress: (p: Progress) => void,
  beside?: BesideParent,
): Promise<void> {
  await images.leaseSnapshot(lease, chain);
  if (await snapshotExists(images, chain)) {
    progress({ desc: layer, state: 'done', offset: layer.size, total: layer.size, message: 'Already exists' });
    return;
  }
  progress({ desc: layer, state: 'extracting', offset: 0, total: layer.size });
  const early = beside !== undefined && parent !== '';
  const { stream, response } = images.snapshots.applyLayer();
  stream.write({
    part: {
      $case: 'header',
      value: {
        name: chain,
        parent,
        mediaType: layer.mediaType,
        expectedDiffId: diffId,
        path: images.content.blobPath(layer.digest),
        labels: { [LAYER_LABEL]: diffId },
        follow: false,
        size: 0n,
        afterParent: early,
      },
    },
  });
  let detach = () => {};
  if (!early) stream.end();
  else {
    // The stream stays open while the layer is wanted: its end withdraws it (the pull failed), and
    // the snapshotter answers once it has dropped it; one that does not answer is not waited for long.
    let timer: NodeJS.Timeout | undefined;
    const withdraw = () => {
      stream.end();
      timer = setTimeout(() => stream.cancel(), ABANDON_WAIT_MS);
    };
    if (beside.signal.aborted) withdraw();
    else beside.signal.addEventListener('abort', withdraw, { once: true });
    detach = () => {
      beside.signal.removeEventListener('abort', withdraw);
      clearTimeout(timer);
    };
  }
  try {
    await response;
  } catch (err) {
    // A snapshotter from before after_parent knows no such wait: the layer goes on once its parent is in.
    if (early && isNotFound(err) && !beside.signal.aborted) {
      await beside.parentApplied;
      return applyLayer(images, lease, layer, chain, parent, diffId, progress);
    }
    if (!isAlreadyExists(err)) throw err;
  } finally {
    detach();
  }
  progress({ desc: layer, state: 'done', offset: layer.size, total: layer.size, message: 'Pull complete' });
}

/** A layer applied beside its parent, which is still being applied (`parentApplied`) until `signal` withdraws it. */
interface BesideParent {
  parentApplied: Promise<void>;
  signal: AbortSignal;
}

/** Makes sure every layer of an image is a snapshot (after load or import, or a pull without unpack). */
export async function unpack(
  images: Images,
  r: ResolvedImage,
  progress: (p: Progress) => void = () => {},
): Promise<string> {
  await images.withLease('unpack', async (lease) => {
    for (const [i, layer] of r.manifest.layers.entries()) {
      if (!(await images.content.has(layer.digest)))
        throw failedPrecondition(`layer ${layer.digest} of ${r.record.name} is not in the content store`);
      await applyLayer(images, lease, layer, r.chainIds[i], r.chainIds[i - 1] ?? '', r.diffIds[i], progress);
    }
  });
  return r.chainIds.at(-1) ?? '';
}
