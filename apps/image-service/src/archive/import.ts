/**
 * load and import. load reads an OCI image layout or a docker-archive
 * tarball (either one, from any tool; plain, gzip or zstd), storing each blob
 * verified and naming the images it declares; import turns a root filesystem
 * tarball into a one-layer image. Both work under a lease: what a failed or
 * interrupted load stored is garbage the moment it ends.
 */
import { createHash, randomUUID } from 'node:crypto';
import { open } from 'node:fs/promises';
import { posix } from 'node:path';
import { createGzip } from 'node:zlib';
import { invalidArgument, isAlreadyExists } from '@ctr/common/errors';
import { formatReference, parseReference } from '@ctr/common/reference';
import { DecompressError, decompress, detectCompression, type TarEntry, TarFormatError, TarReader } from '@ctr/tar';
import type { Writer } from '../content/store.js';
import type { Images } from '../images.js';
import type { ImageRecord } from '../metadata.js';
import { type Descriptor, hostPlatform, MediaType, parseConfig, parseDocument, sha256 } from '../oci.js';

/** Files other than blobs (index.json, manifest.json, configs) are read into memory up to this size. */
const MAX_META_FILE = 32 << 20;

/** The name of an image a tarball does not name (docker's dangling `<none>:<none>`). */
export const danglingName = (digest: string) => `<none>@${digest}`;

/** Undoes a whole-archive compression (docker load takes .tar.gz too). */
async function* decompressed(chunks: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  try {
    yield* decompress(chunks);
  } catch (err) {
    if (err instanceof DecompressError) throw invalidArgument(`the tarball is not valid: ${err.message}`);
    throw err;
  }
}

type Op = { kind: 'entry'; e: TarEntry } | { kind: 'data'; chunk: Buffer } | { kind: 'end' };

/** Feeds a tar stream to an async consumer, entry by entry, in order. */
async function readTar(
  chunks: AsyncIterable<Buffer>,
  on: { entry(e: TarEntry): Promise<void>; data(c: Buffer): Promise<void>; end(): Promise<void> },
): Promise<void> {
  const ops: Op[] = [];
  const reader = new TarReader({
    entry: (e) => ops.push({ kind: 'entry', e }),
    data: (chunk) => ops.push({ kind: 'data', chunk }),
    end: () => ops.push({ kind: 'end' }),
  });
  const drain = async () => {
    for (let op = ops.shift(); op; op = ops.shift()) {
      if (op.kind === 'entry') await on.entry(op.e);
      else if (op.kind === 'data') await on.data(op.chunk);
      else await on.end();
    }
  };
  try {
    let any = false;
    for await (const chunk of chunks) {
      any = true;
      reader.write(chunk);
      await drain();
    }
    if (!any) throw invalidArgument('the tarball is empty');
    reader.end();
    await drain();
  } catch (err) {
    if (err instanceof TarFormatError) throw invalidArgument(`not a valid tarball: ${err.message}`);
    throw err;
  }
}

const clean = (p: string) =>
  posix
    .normalize(p)
    .replace(/^(\.\/)+|^\/+/, '')
    .replace(/\/+$/, '');

interface Stored {
  digest: string;
  size: number;
}

/** Reads the archive's files: blobs into the content store (verified), the rest into memory. */
async function readArchive(images: Images, lease: string, chunks: AsyncIterable<Buffer>) {
  const files = new Map<string, Buffer>();
  const stored = new Map<string, Stored>();
  const links = new Map<string, string>();
  let cur: { path: string; size: number; writer?: Writer; skip?: boolean; buf?: Buffer[] } | undefined;

  await readTar(decompressed(chunks), {
    entry: async (e) => {
      const path = clean(e.path);
      if (e.type === 'symlink') links.set(path, clean(posix.join(posix.dirname(path), e.linkname)));
      if (e.type === 'link') links.set(path, clean(e.linkname));
      if (e.type !== 'file') return;
      const blob = /^blobs\/sha256\/([a-f0-9]{64})$/.exec(path);
      const big = e.size > MAX_META_FILE || /(^|\/)layer\.tar$|\.tar(\.gz|\.zst)?$/.test(path);
      cur = { path, size: e.size };
      if (blob || big) {
        const expected = blob ? `sha256:${blob[1]}` : '';
        if (expected && (await images.leaseContent(lease, expected))) {
          cur.skip = true;
          stored.set(path, { digest: expected, size: e.size });
          return;
        }
        try {
          cur.writer = await images.content.writer(`import-${randomUUID()}`, expected, e.size);
        } catch (err) {
          if (!isAlreadyExists(err)) throw err;
          cur.skip = true;
          stored.set(path, { digest: expected, size: e.size });
        }
      } else {
        cur.buf = [];
      }
    },
    data: async (chunk) => {
      if (!cur || cur.skip) return;
      if (cur.writer) await cur.writer.write(chunk);
      else cur.buf?.push(Buffer.from(chunk));
    },
    end: async () => {
      const c = cur;
      cur = undefined;
      if (!c || c.skip) return;
      if (c.writer) {
        const w = c.writer;
        try {
          const digest = await images.gcLock.run(async () => {
            const d = await w.commit(c.size, w.expected);
            images.meta.addLeaseResource(lease, { kind: 'content', id: d });
            return d;
          });
          stored.set(c.path, { digest, size: c.size });
        } catch (err) {
          throw invalidArgument(`${c.path} in the tarball: ${(err as Error).message}`);
        } finally {
          await w.close();
        }
      } else if (c.buf) files.set(c.path, Buffer.concat(c.buf));
    },
  }).catch(async (err) => {
    await cur?.writer?.close();
    if (cur?.writer) await images.content.abort(cur.writer.ref).catch(() => undefined);
    throw err;
  });

  const resolve = (p: string) => {
    let path = clean(p);
    for (let i = 0; i < 10 && links.has(path); i++) path = links.get(path) as string;
    return path;
  };
  return {
    file: (p: string) => files.get(resolve(p)),
    blob: (p: string) => stored.get(resolve(p)),
    has: (p: string) => files.has(p),
  };
}

/** A name from an index entry's annotations; undefined when the archive names no repository. */
function nameOf(desc: Descriptor): string | undefined {
  const a = desc.annotations ?? {};
  for (const candidate of [a['io.containerd.image.name'], a['org.opencontainers.image.ref.name']]) {
    if (!candidate || !/[/:]/.test(candidate)) continue;
    try {
      return formatReference(parseReference(candidate));
    } catch {}
  }
  return undefined;
}

function json<T>(bytes: Buffer | undefined, what: string): T {
  if (!bytes) throw invalidArgument(`the tarball has no ${what}`);
  try {
    return JSON.parse(bytes.toString('utf8')) as T;
  } catch (err) {
    throw invalidArgument(`${what} in the tarball is not valid JSON: ${(err as Error).message}`);
  }
}

/** load: the images of an OCI layout or docker-archive tarball, stored and named. */
export async function loadArchive(
  images: Images,
  chunks: AsyncIterable<Buffer>,
  labels: Record<string, string> = {},
): Promise<ImageRecord[]> {
  return images.withLease('load', async (lease) => {
    const archive = await readArchive(images, lease, chunks);
    const out: ImageRecord[] = [];
    if (archive.has('index.json')) {
      const index = json<{ manifests?: Descriptor[] }>(archive.file('index.json'), 'index.json');
      if (!Array.isArray(index.manifests) || !index.manifests.length)
        throw invalidArgument('index.json in the tarball lists no images');
      for (const desc of index.manifests) {
        if (!archive.blob(`blobs/sha256/${desc.digest?.slice(7)}`) && !(await images.content.has(desc.digest)))
          throw invalidArgument(`the tarball lacks ${desc.digest}, which its index.json lists`);
        const target: Descriptor = { mediaType: desc.mediaType, digest: desc.digest, size: desc.size };
        // Check what we are about to name: documents parse, the platform's config and layers are here.
        await checkImage(images, target);
        const record = images.meta.putImage(nameOf(desc) ?? danglingName(desc.digest), target, labels);
        out.push(record);
      }
      return out;
    }
    if (archive.has('manifest.json')) {
      const entries = json<{ Config: string; RepoTags?: string[] | null; Layers: string[] }[]>(
        archive.file('manifest.json'),
        'manifest.json',
      );
      if (!Array.isArray(entries) || !entries.length)
        throw invalidArgument('manifest.json in the tarball lists no images');
      for (const entry of entries) {
        const configBytes = archive.file(entry.Config) ?? (await blobBytes(images, archive.blob(entry.Config)));
        if (!configBytes) throw invalidArgument(`the tarball lacks the config ${entry.Config}`);
        parseConfig(configBytes, entry.Layers?.length ?? -1);
        const configDigest = sha256(configBytes);
        await images.putBlob(lease, configDigest, configBytes);
        const layers: Descriptor[] = [];
        for (const path of entry.Layers) {
          const b = archive.blob(path);
          if (!b) throw invalidArgument(`the tarball lacks the layer ${path}`);
          layers.push({ mediaType: await layerType(images, b.digest), digest: b.digest, size: b.size });
        }
        const manifest = Buffer.from(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: MediaType.OciManifest,
            config: { mediaType: MediaType.OciConfig, digest: configDigest, size: configBytes.length },
            layers,
          }),
        );
        const digest = sha256(manifest);
        await images.putBlob(lease, digest, manifest);
        const target = { mediaType: MediaType.OciManifest, digest, size: manifest.length };
        const names = (entry.RepoTags ?? []).map((t) => formatReference(parseReference(t)));
        if (!names.length) names.push(danglingName(digest));
        for (const name of names) out.push(images.meta.putImage(name, target, labels));
      }
      return out;
    }
    throw invalidArgument(
      'the tarball is neither an OCI image layout nor a docker-archive (no index.json or manifest.json); use import for a root filesystem',
    );
  });
}

async function blobBytes(images: Images, b: Stored | undefined): Promise<Buffer | undefined> {
  return b && b.size <= MAX_META_FILE ? images.content.read(b.digest) : undefined;
}

/** A layer's media type from its first bytes. */
async function layerType(images: Images, digest: string): Promise<string> {
  const fh = await open(images.content.blobPath(digest));
  try {
    const head = Buffer.alloc(4);
    const { bytesRead } = await fh.read(head, 0, 4, 0);
    const kind = detectCompression(head.subarray(0, bytesRead));
    return kind === 'gzip' ? MediaType.OciLayerGzip : kind === 'zstd' ? MediaType.OciLayerZstd : MediaType.OciLayer;
  } finally {
    await fh.close();
  }
}

async function checkImage(images: Images, target: Descriptor): Promise<void> {
  const bytes = await images.content.read(target.digest);
  parseDocument(bytes, target.mediaType);
  const rec: ImageRecord = { name: 'check', target, labels: {}, createdAt: new Date(), updatedAt: new Date() };
  const r = await images.resolve(rec, hostPlatform()).catch((err) => {
    // An image for another platform is fine to load, just not to run here.
    if (/no matching manifest/.test((err as Error).message)) return undefined;
    throw invalidArgument(`image ${target.digest} in the tarball: ${(err as Error).message}`);
  });
  for (const l of r?.manifest.layers ?? [])
    if (!(await images.content.has(l.digest))) throw invalidArgument(`the tarball lacks the layer ${l.digest}`);
}

/** What commit puts on top of a parent image (see ImageCommit in the API). */
export interface LayerCommit {
  parent: string;
  configJson: string;
  author: string;
  comment: string;
  createdBy: string;
}

/**
 * import: a root filesystem tarball (plain, gzip or zstd) as a one-layer
 * image named `name`; with `commit`, the tarball is a layer put on top of the
 * parent image (the new image is dangling when `name` is empty).
 */
export async function importRootfs(
  images: Images,
  chunks: AsyncIterable<Buffer>,
  name: string,
  labels: Record<string, string> = {},
  commit?: LayerCommit,
): Promise<ImageRecord> {
  const ref = name ? formatReference(parseReference(name)) : '';
  if (!ref && !commit) throw invalidArgument('import needs a name for the image');
  const parent = commit
    ? await images.resolve(await images.find(commit.parent, hostPlatform()), hostPlatform())
    : undefined;
  let section: Record<string, unknown> = {};
  if (commit?.configJson) {
    try {
      section = JSON.parse(commit.configJson) as Record<string, unknown>;
    } catch {
      throw invalidArgument('the committed image config is not JSON');
    }
  }
  return images.withLease('import', async (lease) => {
    const diff = createHash('sha256');
    const gzip = createGzip({ chunkSize: 256 << 10 });
    const w = await images.content.writer(`import-${randomUUID()}`, '', 0);
    let size = 0;
    let layerDigest: string;
    try {
      const compressed = (async () => {
        for await (const c of gzip) {
          await w.write(c as Buffer);
          size += (c as Buffer).length;
        }
      })();
      // Awaited below on success; on failure the stream is destroyed and this ends with it.
      compressed.catch(() => undefined);
      // The tar is checked entry by entry on the way, so a file that is not one fails here.
      const tee = async function* () {
        for await (const c of decompressed(chunks)) {
          diff.update(c);
          if (!gzip.write(c)) await new Promise((r) => gzip.once('drain', r));
          yield c;
        }
        gzip.end();
      };
      await readTar(tee(), { entry: async () => {}, data: async () => {}, end: async () => {} });
      await compressed;
      layerDigest = await images.gcLock.run(async () => {
        const d = await w.commit(0, '');
        images.meta.addLeaseResource(lease, { kind: 'content', id: d });
        return d;
      });
    } catch (err) {
      gzip.destroy();
      await w.close();
      await images.content.abort(w.ref).catch(() => undefined);
      throw err;
    }
    const diffId = `sha256:${diff.digest('hex')}`;
    const now = new Date().toISOString();
    const platform = hostPlatform();
    // A docker-typed parent keeps docker's media types, as docker commit does.
    const docker = parent?.manifestDesc.mediaType === MediaType.DockerManifest;
    const base = parent?.config;
    const history = commit
      ? {
          created: now,
          created_by: commit.createdBy,
          ...(commit.author ? { author: commit.author } : {}),
          ...(commit.comment ? { comment: commit.comment } : {}),
        }
      : { created: now, created_by: 'ctrctl import', comment: 'Imported from tarball' };
    const config = Buffer.from(
      JSON.stringify({
        created: now,
        ...(commit?.author ? { author: commit.author } : {}),
        architecture: base?.architecture ?? platform.architecture,
        os: base?.os ?? platform.os,
        ...((base ? base.variant : platform.variant) ? { variant: base ? base.variant : platform.variant } : {}),
        config: commit ? section : {},
        rootfs: { type: 'layers', diff_ids: [...(parent?.diffIds ?? []), diffId] },
        history: [...(base?.history ?? []), history],
      }),
    );
    const configDigest = sha256(config);
    await images.putBlob(lease, configDigest, config);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: docker ? MediaType.DockerManifest : MediaType.OciManifest,
        config: {
          mediaType: docker ? MediaType.DockerConfig : MediaType.OciConfig,
          digest: configDigest,
          size: config.length,
        },
        layers: [
          ...(parent?.manifest.layers ?? []),
          { mediaType: docker ? MediaType.DockerLayerGzip : MediaType.OciLayerGzip, digest: layerDigest, size },
        ],
      }),
    );
    const digest = sha256(manifest);
    await images.putBlob(lease, digest, manifest);
    const target = {
      mediaType: docker ? MediaType.DockerManifest : MediaType.OciManifest,
      digest,
      size: manifest.length,
    };
    return images.meta.putImage(ref || danglingName(digest), target, labels);
  });
}
