/** The Images API (`ctr.images.v1`): what ctrctl's image commands and container-service call. */
import { createReadStream } from 'node:fs';
import {
  type Image,
  ImagesService,
  type ImportRequest,
  type TransferProgress,
  TransferState,
} from '@ctr/api/images/v1/images';
import type { Descriptor as ApiDescriptor, Platform as ApiPlatform } from '@ctr/api/types/v1/types';
import type { Config } from '@ctr/common/config';
import { failedPrecondition, invalidArgument } from '@ctr/common/errors';
import type { EventBus } from '@ctr/common/events';
import { implement } from '@ctr/common/grpc';
import { formatReference, parseReference } from '@ctr/common/reference';
import { exportImages } from './archive/export.js';
import { importRootfs, loadArchive } from './archive/import.js';
import { displayName, type Images, type ResolvedImage } from './images.js';
import type { ImageRecord } from './metadata.js';
import { type Descriptor, hostPlatform, type Platform } from './oci.js';
import { type Progress, pull, unpack } from './pull.js';
import { push } from './push.js';
import { Registry } from './registry/client.js';
import type { Credentials, CredentialStore } from './registry/credentials.js';

export interface ServiceDeps {
  images: Images;
  config: Config;
  credentials: CredentialStore;
  bus: EventBus;
}

const STATE: Record<Progress['state'], TransferState> = {
  resolving: TransferState.TRANSFER_STATE_RESOLVING,
  waiting: TransferState.TRANSFER_STATE_WAITING,
  downloading: TransferState.TRANSFER_STATE_DOWNLOADING,
  verifying: TransferState.TRANSFER_STATE_VERIFYING,
  extracting: TransferState.TRANSFER_STATE_EXTRACTING,
  uploading: TransferState.TRANSFER_STATE_UPLOADING,
  exists: TransferState.TRANSFER_STATE_EXISTS,
  done: TransferState.TRANSFER_STATE_DONE,
};

export const toApiDescriptor = (d: Descriptor): ApiDescriptor => ({
  mediaType: d.mediaType,
  digest: d.digest,
  size: BigInt(d.size),
  annotations: d.annotations ?? {},
  urls: d.urls ?? [],
});

/** Streams a transfer's progress to the caller. */
function progressWriter(call: { write(p: TransferProgress): boolean }) {
  return (p: Progress) =>
    call.write({
      descriptor: p.desc && toApiDescriptor(p.desc),
      state: STATE[p.state],
      offset: BigInt(p.offset),
      total: BigInt(p.total),
      message: p.message ?? '',
    });
}

function platformOf(p: ApiPlatform | undefined): Platform {
  if (!p?.os && !p?.architecture) return hostPlatform();
  if (!p.os || !p.architecture) throw invalidArgument('a platform needs both os and architecture');
  return { os: p.os, architecture: p.architecture, variant: p.variant || undefined };
}

function credentialsOf(auth: { username: string; password: string; identityToken: string } | undefined) {
  if (!auth || (!auth.username && !auth.identityToken)) return undefined;
  return { username: auth.username, password: auth.password, identityToken: auth.identityToken || undefined };
}

/** A reference as given, checked; pulls and pushes need a name, not an id. */
function reference(input: string) {
  const ref = parseReference(input);
  if (ref.domain === '' || !ref.path) throw invalidArgument(`invalid reference format: ${input}`);
  return ref;
}

export function imagesApi({ images, config, credentials, bus }: ServiceDeps) {
  const registry = (auth?: Credentials) => new Registry({ config: config.registry, credentials, auth });

  async function describe(rec: ImageRecord, platform: Platform): Promise<Image> {
    const base: Image = {
      name: rec.name,
      target: toApiDescriptor(rec.target),
      labels: rec.labels,
      createdAt: rec.createdAt,
      updatedAt: rec.updatedAt,
      id: rec.target.digest,
      size: 0n,
      contentSize: 0n,
      layerDiffIds: [],
    };
    let r: ResolvedImage;
    try {
      r = await images.resolve(rec, platform);
    } catch {
      return base;
    }
    const contentSize =
      rec.target.size +
      (rec.target.digest === r.manifestDesc.digest ? 0 : r.manifestDesc.size) +
      r.configDesc.size +
      r.manifest.layers.reduce((n, l) => n + l.size, 0);
    let size = 0;
    for (const chain of r.chainIds) {
      const u = await images.snapshots.usage({ key: chain }).catch(() => undefined);
      if (!u) {
        size = contentSize;
        break;
      }
      size += Number(u.size);
    }
    const created = r.config.created ? new Date(r.config.created) : undefined;
    return {
      ...base,
      id: r.configDesc.digest,
      size: BigInt(size),
      contentSize: BigInt(contentSize),
      imageCreatedAt: created && !Number.isNaN(created.getTime()) ? created : undefined,
      layerDiffIds: r.diffIds,
    };
  }

  function matches(rec: ImageRecord, filters: string[]): boolean {
    return filters.every((f) => {
      const m = /^(name|reference|labels\.(?:"[^"]+"|[\w.-]+)|dangling)\s*(==|=|!=)\s*(.*)$/.exec(f);
      if (!m) throw invalidArgument(`invalid filter ${JSON.stringify(f)}`);
      const [, field, op, raw] = m;
      const value = raw.replace(/^"(.*)"$/, '$1');
      let ok: boolean;
      if (field === 'name') ok = rec.name === value;
      else if (field === 'reference') {
        const glob = new RegExp(
          `^${value
            .replace(/[.+^${}()|[\]\\]/g, '\\$&')
            .replace(/\*/g, '[^/]*')
            .replace(/\?/g, '.')}$`,
        );
        const familiar = displayName(rec.name);
        ok = glob.test(familiar) || glob.test(familiar.replace(/:[^:/]+$/, '')) || glob.test(rec.name);
      } else if (field === 'dangling') ok = rec.name.startsWith('<none>@') === (value === 'true');
      else ok = rec.labels[field.slice(7).replace(/^"(.*)"$/, '$1')] === value;
      return op === '!=' ? !ok : ok;
    });
  }

  /** Removes records and, when no name is left for the image, what only it held. */
  async function remove(ref: string, force: boolean, platform: Platform) {
    const rec = await images.find(ref, platform);
    const byName = rec.name === ref || rec.name === formatReferenceSafe(ref) || rec.target.digest === digestOf(ref);
    const siblings = await images.sameImage(rec, platform);
    const r = await images.resolve(rec, platform).catch(() => undefined);
    const id = r?.configDesc.digest ?? rec.target.digest;
    if (!byName && siblings.length > 1 && !force)
      throw failedPrecondition(
        `conflict: unable to delete ${id.slice(7, 19)} (must be forced) - image is referenced in multiple repositories`,
      );
    const targets = byName ? [rec] : siblings;
    const last = targets.length === siblings.length;
    const used = r && last ? await images.usedBy(r) : [];
    if (used.length && !force)
      throw failedPrecondition(
        `conflict: unable to remove repository reference "${ref}" (must force) - container ${used[0].slice(0, 12)} is using its referenced image ${id.slice(7, 19)}`,
      );
    const untagged: string[] = [];
    for (const t of targets) {
      images.meta.deleteImage(t.name);
      untagged.push(displayName(t.name));
      void bus.publish('imageDeleted', { name: t.name, digest: t.target.digest });
    }
    const deleted: string[] = [];
    if (last) {
      const gc = await images.collect();
      if (!used.length) deleted.push(id, ...gc.removed.filter((x) => x.startsWith('snapshot ')).map((x) => x.slice(9)));
    }
    return { untagged, deleted };
  }

  return implement(ImagesService, {
    get: async ({ ref }) => {
      const platform = hostPlatform();
      return describe(await images.find(ref, platform), platform);
    },
    list: async ({ filters }) => {
      const platform = hostPlatform();
      const out: Image[] = [];
      for (const rec of images.meta.listImages()) if (matches(rec, filters)) out.push(await describe(rec, platform));
      return { images: out };
    },
    config: async ({ ref, platform }) => {
      const p = platformOf(platform);
      const r = await images.resolve(await images.find(ref, p), p);
      return { id: r.configDesc.digest, configJson: r.configBytes, chainId: r.chainIds.at(-1) ?? '' };
    },
    tag: async ({ source, target }) => {
      const platform = hostPlatform();
      const rec = await images.find(source, platform);
      const name = formatReference(reference(target));
      const tagged = images.meta.putImage(name, rec.target, rec.labels);
      void bus.publish('imageTagged', { source: rec.name, name, digest: rec.target.digest });
      return describe(tagged, platform);
    },
    delete: async ({ ref, force }) => remove(ref, force, hostPlatform()),
    pull: async (req, call) => {
      const ref = reference(req.ref);
      const platform = platformOf(req.platform);
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort());
      call.on('close', () => ac.abort());
      const repo = registry(credentialsOf(req.auth)).repository(ref);
      const rec = await pull(images, {
        ref,
        repo,
        platform,
        unpack: req.unpack,
        maxConcurrent: req.maxConcurrentDownloads || 3,
        signal: ac.signal,
        progress: progressWriter(call),
      });
      void bus.publish('imagePulled', { name: rec.name, digest: rec.target.digest });
      call.write({
        state: TransferState.TRANSFER_STATE_DONE,
        offset: 0n,
        total: 0n,
        image: await describe(rec, platform),
        message: rec.target.digest,
      });
    },
    push: async (req, call) => {
      const ref = reference(req.ref);
      const platform = platformOf(req.platform);
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort());
      call.on('close', () => ac.abort());
      const rec = await images.find(req.ref, platform);
      const image = await images.resolve(rec, platform);
      const repo = registry(credentialsOf(req.auth)).repository(ref, true);
      const digest = await push(images, { repo, image, signal: ac.signal, progress: progressWriter(call) });
      void bus.publish('imagePushed', { name: formatReference(ref), digest });
      call.write({
        state: TransferState.TRANSFER_STATE_DONE,
        offset: 0n,
        total: BigInt(image.manifestDesc.size),
        image: await describe(rec, platform),
        message: digest,
      });
    },
    import: async (call) => {
      // Iterated by hand: leaving a for-await early would destroy the call before the error status goes out.
      const it = (call as AsyncIterable<ImportRequest>)[Symbol.asyncIterator]();
      const first = await it.next();
      if (first.done || first.value.part?.$case !== 'header') throw invalidArgument('an import starts with its header');
      const h = first.value.part.value;
      async function* chunks(): AsyncGenerator<Buffer> {
        if (h.path) {
          for await (const c of createReadStream(h.path, { highWaterMark: 1 << 20 })) yield c as Buffer;
          return;
        }
        for (let n = await it.next(); !n.done; n = await it.next()) {
          if (n.value.part?.$case !== 'chunk') throw invalidArgument('an import sends its header once');
          yield n.value.part.value;
        }
      }
      const platform = hostPlatform();
      let records: ImageRecord[];
      try {
        records =
          h.rootfsRef || h.commit
            ? [await importRootfs(images, chunks(), h.rootfsRef, h.labels, h.commit)]
            : await loadArchive(images, chunks(), h.labels);
      } catch (err) {
        await images.collect().catch(() => undefined);
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw invalidArgument(`open ${h.path}: no such file`);
        throw err;
      }
      for (const rec of records) {
        const r = await images.resolve(rec, platform).catch(() => undefined);
        if (r) await unpack(images, r);
        void bus.publish(h.rootfsRef || h.commit ? 'imageImported' : 'imageLoaded', {
          name: rec.name,
          digest: rec.target.digest,
        });
      }
      const out: Image[] = [];
      for (const rec of records) out.push(await describe(rec, platform));
      call.write({ images: out });
    },
    export: async ({ refs, platform }, call) => {
      if (!refs.length) throw invalidArgument('save needs at least one image');
      let buf: Buffer[] = [];
      let size = 0;
      const flush = async () => {
        if (!size) return;
        const data = Buffer.concat(buf);
        buf = [];
        size = 0;
        if (!call.write({ data })) await new Promise((r) => call.once('drain', r));
      };
      const names = await exportImages(images, refs, platformOf(platform), async (chunk) => {
        buf.push(chunk);
        size += chunk.length;
        if (size >= 1 << 20) await flush();
      });
      await flush();
      void bus.publish('imageSaved', { names });
    },
    unpack: async ({ ref, platform }) => {
      const p = platformOf(platform);
      const r = await images.resolve(await images.find(ref, p), p);
      return { chainId: await unpack(images, r) };
    },
    prune: async ({ all, filters }) => {
      const platform = hostPlatform();
      const deleted: string[] = [];
      if (all) {
        const seen = new Set<string>();
        for (const rec of images.meta.listImages()) {
          if (!matches(rec, filters)) continue;
          const r = await images.resolve(rec, platform).catch(() => undefined);
          if (r && (await images.usedBy(r)).length) continue;
          images.meta.deleteImage(rec.name);
          deleted.push(`untagged: ${displayName(rec.name)}`);
          const id = r?.configDesc.digest ?? rec.target.digest;
          if (!seen.has(id)) deleted.push(`deleted: ${id}`);
          seen.add(id);
          void bus.publish('imageDeleted', { name: rec.name, digest: rec.target.digest });
        }
      }
      const gc = await images.collect();
      for (const x of gc.removed) if (x.startsWith('snapshot ')) deleted.push(`deleted: ${x.slice(9)}`);
      return { deleted, spaceReclaimed: BigInt(gc.bytesFreed) };
    },
    usage: async () => {
      const platform = hostPlatform();
      const ids = new Map<string, { size: number; active: boolean }>();
      for (const rec of images.meta.listImages()) {
        const d = await describe(rec, platform);
        if (ids.has(d.id)) continue;
        const r = await images.resolve(rec, platform).catch(() => undefined);
        ids.set(d.id, { size: Number(d.size), active: r ? (await images.usedBy(r)).length > 0 : false });
      }
      const all = [...ids.values()];
      const contentSize = (await images.content.list()).reduce((n, b) => n + b.size, 0);
      return {
        images: all.length,
        imagesActive: all.filter((i) => i.active).length,
        imagesSize: BigInt(all.reduce((n, i) => n + i.size, 0)),
        imagesReclaimable: BigInt(all.filter((i) => !i.active).reduce((n, i) => n + i.size, 0)),
        contentSize: BigInt(contentSize),
      };
    },
    login: async ({ registry: host, username, password }) => {
      const domain = registryDomain(host);
      if (!username) throw invalidArgument('a username is required');
      const creds = { username, password };
      await registry(creds).repository({ domain, path: '' }).ping();
      await credentials.set(domain, creds);
      return { status: 'Login Succeeded' };
    },
    logout: async ({ registry: host }) => {
      await credentials.remove(registryDomain(host));
      return {};
    },
  });
}

function formatReferenceSafe(input: string): string {
  try {
    return formatReference(parseReference(input));
  } catch {
    return '';
  }
}

function digestOf(input: string): string {
  try {
    return parseReference(input).digest ?? '';
  } catch {
    return '';
  }
}

/** The registry host a user names: docker.io for empty or the hub's aliases. */
export function registryDomain(input: string): string {
  const host = input
    .trim()
    .replace(/^https?:\/\//, '')
    .replace(/\/.*$/, '');
  if (!host || host === 'index.docker.io' || host === 'registry-1.docker.io') return 'docker.io';
  const ref = parseReference(`${host}/x`);
  if (ref.domain !== host) throw invalidArgument(`invalid registry ${JSON.stringify(input)}`);
  return host;
}
