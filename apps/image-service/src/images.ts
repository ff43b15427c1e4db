/**
 * Images: names pointing at manifests or indexes in the content store, what
 * each one is made of (config, layers, chain ids), and garbage collection of
 * the content and layer snapshots no image or lease holds any more.
 */
import { randomUUID } from 'node:crypto';
import type { SnapshotsService } from '@ctr/api/snapshots/v1/snapshots';
import { CtrError, failedPrecondition, invalidArgument, isAlreadyExists, isKind, notFound } from '@ctr/common/errors';
import { type ApiClient, readStream } from '@ctr/common/grpc';
import type { Logger } from '@ctr/common/log';
import { familiarString, formatReference, parseReference } from '@ctr/common/reference';
import type { ContentStore } from './content/store.js';
import type { ImageRecord, Metadata } from './metadata.js';
import {
  chainIds,
  type Descriptor,
  type ImageConfig,
  isIndexType,
  isManifestType,
  type Manifest,
  type Platform,
  parseConfig,
  parseDocument,
  pickManifest,
} from './oci.js';

/** Labels the leases image-service takes for its own operations; a restart drops them (their operation died). */
export const OWN_LEASE = { key: 'ctr.io/owner', value: 'image-service' } as const;

/** The label ApplyLayer puts on the snapshots of image layers; GC only removes those. */
export const LAYER_LABEL = 'ctr.io/image.layer';

/** One platform's view of an image. */
export interface ResolvedImage {
  record: ImageRecord;
  manifestDesc: Descriptor;
  manifest: Manifest;
  configDesc: Descriptor;
  config: ImageConfig;
  configBytes: Buffer;
  diffIds: string[];
  chainIds: string[];
}

/** A simple mutex: GC's sweep against the lease-and-check step of writers. */
class Mutex {
  #tail: Promise<void> = Promise.resolve();
  async run<T>(fn: () => Promise<T> | T): Promise<T> {
    const prev = this.#tail;
    let release!: () => void;
    this.#tail = new Promise((r) => (release = r));
    await prev;
    try {
      return await fn();
    } finally {
      release();
    }
  }
}

export class Images {
  readonly gcLock = new Mutex();

  constructor(
    readonly content: ContentStore,
    readonly meta: Metadata,
    readonly snapshots: ApiClient<typeof SnapshotsService>,
    readonly log: Logger,
  ) {}

  /** At start-up: the leases of operations the last run of the service did not finish. */
  dropStaleLeases(): number {
    return this.meta.deleteLeasesLabelled(OWN_LEASE.key, OWN_LEASE.value);
  }

  // --- lookup -----------------------------------------------------------------

  /**
   * Finds an image as docker does: by name (normalised), by `name@digest`
   * when the named repository holds that manifest, or by (a prefix of) its id.
   */
  async find(input: string, platform: Platform): Promise<ImageRecord> {
    const byName = this.meta.getImage(input) ?? this.#byName(input);
    if (byName) return byName;
    const id = input.startsWith('sha256:') ? input.slice(7) : input;
    if (/^[a-f0-9]{4,64}$/.test(id)) {
      const matches = new Map<string, ImageRecord[]>();
      for (const rec of this.meta.listImages()) {
        const imageId = await this.imageId(rec, platform).catch(() => '');
        if (imageId.slice(7).startsWith(id)) matches.set(imageId, [...(matches.get(imageId) ?? []), rec]);
      }
      if (matches.size > 1) throw invalidArgument(`short image id ${input} is ambiguous`);
      const [found] = [...matches.values()];
      if (found) return found[0];
    }
    throw notFound(`No such image: ${input}`);
  }

  /** Every record that names the same image (by id) as `rec`. */
  async sameImage(rec: ImageRecord, platform: Platform): Promise<ImageRecord[]> {
    const id = await this.imageId(rec, platform).catch(() => rec.target.digest);
    const out: ImageRecord[] = [];
    for (const r of this.meta.listImages()) {
      const other = r.name === rec.name ? id : await this.imageId(r, platform).catch(() => r.target.digest);
      if (other === id) out.push(r);
    }
    return out;
  }

  #byName(input: string): ImageRecord | undefined {
    let ref: ReturnType<typeof parseReference>;
    try {
      ref = parseReference(input);
    } catch {
      return undefined;
    }
    const name = formatReference(ref);
    const rec = this.meta.getImage(name);
    if (rec || !ref.digest) return rec;
    const repo = `${ref.domain}/${ref.path}`;
    return this.meta.listImages().find((r) => r.target.digest === ref.digest && r.name.startsWith(`${repo}:`));
  }

  /** A blob an image refers to; NOT_FOUND names it as missing from the image. */
  readBlob(desc: Descriptor): Promise<Buffer> {
    return this.content.read(desc.digest).catch((err) => {
      throw isKind(err, 'NotFound') ? notFound(`content ${desc.digest} of the image is missing`) : err;
    });
  }

  /** The manifest for `platform` under a target (itself, or picked from an index). */
  async platformManifest(target: Descriptor, platform: Platform): Promise<{ desc: Descriptor; manifest: Manifest }> {
    if (isManifestType(target.mediaType)) {
      const bytes = await this.readBlob(target);
      const doc = parseDocument(bytes, target.mediaType);
      if (doc.kind !== 'manifest') throw failedPrecondition(`${target.digest} is not a manifest`);
      return { desc: target, manifest: doc.manifest };
    }
    if (isIndexType(target.mediaType)) {
      const bytes = await this.readBlob(target);
      const doc = parseDocument(bytes, target.mediaType, 'index');
      if (doc.kind !== 'index') throw failedPrecondition(`${target.digest} is not an index`);
      const present = { ...doc.index, manifests: [] as Descriptor[] };
      for (const m of doc.index.manifests) if (await this.content.has(m.digest)) present.manifests.push(m);
      const desc = pickManifest(present.manifests.length ? present : doc.index, platform);
      return this.platformManifest(desc, platform);
    }
    throw failedPrecondition(`unsupported image media type ${target.mediaType}`);
  }

  async resolve(rec: ImageRecord, platform: Platform): Promise<ResolvedImage> {
    const { desc, manifest } = await this.platformManifest(rec.target, platform);
    const configBytes = await this.readBlob(manifest.config);
    const config = parseConfig(configBytes, manifest.layers.length);
    const diffIds = config.rootfs.diff_ids;
    return {
      record: rec,
      manifestDesc: desc,
      manifest,
      configDesc: manifest.config,
      config,
      configBytes,
      diffIds,
      chainIds: chainIds(diffIds),
    };
  }

  /** The image id docker shows: its config's digest. */
  async imageId(rec: ImageRecord, platform: Platform): Promise<string> {
    const { manifest } = await this.platformManifest(rec.target, platform);
    return manifest.config.digest;
  }

  /** Whether the image's layers are all snapshots (the top one exists). */
  async unpacked(r: ResolvedImage): Promise<boolean> {
    const top = r.chainIds.at(-1);
    if (!top) return true;
    return this.snapshots
      .stat({ key: top })
      .then(() => true)
      .catch(() => false);
  }

  /** Active snapshots (containers) made on an image's top layer: an image in use. */
  async usedBy(r: ResolvedImage): Promise<string[]> {
    const top = r.chainIds.at(-1);
    if (!top) return [];
    const out: string[] = [];
    for await (const page of readStream(this.snapshots.list({ filters: [`parent==${top}`] })))
      for (const s of page.info) if (!s.labels[LAYER_LABEL]) out.push(s.name);
    return out;
  }

  // --- leases -------------------------------------------------------------------

  /** Runs fn under a new lease that protects what it adds; the lease ends with fn. */
  async withLease<T>(purpose: string, fn: (lease: string) => Promise<T>, ttlSeconds = 3600): Promise<T> {
    const id = `${purpose}-${randomUUID()}`;
    this.meta.createLease(id, ttlSeconds, { 'ctr.io/purpose': purpose, [OWN_LEASE.key]: OWN_LEASE.value });
    try {
      return await fn(id);
    } finally {
      this.meta.deleteLease(id);
    }
  }

  /** Adds content to a lease and tells whether it is already stored (atomically against GC). */
  leaseContent(lease: string, digest: string): Promise<boolean> {
    return this.gcLock.run(() => {
      this.meta.addLeaseResource(lease, { kind: 'content', id: digest });
      return this.content.has(digest);
    });
  }

  leaseSnapshot(lease: string, name: string): Promise<void> {
    return this.gcLock.run(() => this.meta.addLeaseResource(lease, { kind: 'snapshot', id: name }));
  }

  /** Stores a small verified blob (a manifest, a config) under a lease. */
  async putBlob(lease: string, digest: string, bytes: Buffer): Promise<void> {
    if (await this.leaseContent(lease, digest)) return;
    let w: Awaited<ReturnType<ContentStore['writer']>>;
    try {
      w = await this.content.writer(`blob-${digest}-${randomUUID()}`, digest, bytes.length);
    } catch (err) {
      if (isAlreadyExists(err)) return;
      throw err;
    }
    try {
      await w.write(bytes);
      await w.commit();
    } finally {
      await w.close();
    }
  }

  // --- garbage collection -----------------------------------------------------

  /**
   * Marks what images and leases reach (content: indexes, the manifests of
   * them we hold, configs, layers; snapshots: the chain ids of every platform
   * held), then removes the rest: blobs, and layer snapshots top-down
   * (a snapshot with children, such as a container's, stays).
   */
  async collect(dryRun = false): Promise<{ removed: string[]; bytesFreed: number }> {
    return this.gcLock.run(async () => {
      const content = new Set<string>();
      const snapshots = new Set<string>();
      for (const r of this.meta.leasedResources()) (r.kind === 'snapshot' ? snapshots : content).add(r.id);
      for (const rec of this.meta.listImages()) await this.#mark(rec.target, content, snapshots);

      const removed: string[] = [];
      let bytesFreed = 0;
      for (const blob of await this.content.list()) {
        if (content.has(blob.digest)) continue;
        removed.push(blob.digest);
        bytesFreed += blob.size;
        if (!dryRun) await this.content.delete(blob.digest);
      }

      const layers: { name: string; parent: string }[] = [];
      for await (const page of readStream(this.snapshots.list({ filters: [`labels."${LAYER_LABEL}"`] })))
        for (const s of page.info) if (!snapshots.has(s.name)) layers.push({ name: s.name, parent: s.parent });
      // Children before parents: repeat while something was removed.
      let pending = layers;
      while (pending.length && !dryRun) {
        const next: typeof pending = [];
        for (const s of pending) {
          try {
            await this.snapshots.remove({ key: s.name }, { retryMs: 5000 });
            removed.push(`snapshot ${s.name}`);
          } catch (err) {
            if (!(err instanceof CtrError && err.kind === 'FailedPrecondition')) throw err;
            next.push(s);
          }
        }
        if (next.length === pending.length) break;
        pending = next;
      }
      if (dryRun) for (const s of layers) removed.push(`snapshot ${s.name}`);
      if (removed.length) this.log.info({ removed: removed.length, bytesFreed }, 'garbage collected');
      return { removed, bytesFreed };
    });
  }

  async #mark(desc: Descriptor, content: Set<string>, snapshots: Set<string>): Promise<void> {
    if (content.has(desc.digest)) return;
    content.add(desc.digest);
    if (!(await this.content.has(desc.digest))) return;
    // Marking reads what is there; a document that does not parse holds nothing more.
    const doc = await this.readBlob(desc)
      .then((b) => parseDocument(b, desc.mediaType))
      .catch(() => undefined);
    if (doc?.kind === 'index') {
      for (const m of doc.index.manifests) await this.#mark(m, content, snapshots);
    } else if (doc?.kind === 'manifest') {
      content.add(doc.manifest.config.digest);
      for (const l of doc.manifest.layers) content.add(l.digest);
      const config = await this.readBlob(doc.manifest.config)
        .then((b) => parseConfig(b, doc.manifest.layers.length))
        .catch(() => undefined);
      for (const c of chainIds(config?.rootfs.diff_ids ?? [])) snapshots.add(c);
    }
  }
}

/** The name a user sees: busybox:latest, 127.0.0.1:5000/app:1. */
export const displayName = (name: string) => {
  try {
    return familiarString(parseReference(name, { defaultTag: false }));
  } catch {
    return name;
  }
};
