/**
 * save: one tarball that is both an OCI image layout and a docker-archive, as
 * docker 25+ writes it. The blobs are stored once, under blobs/sha256/;
 * index.json names each image (io.containerd.image.name, and the tag as
 * org.opencontainers.image.ref.name) and manifest.json points docker-archive
 * readers at the same config and layer blobs.
 */
import { createReadStream } from 'node:fs';
import { parseReference } from '@ctr/common/reference';
import { header, padding, trailer } from '@ctr/tar';
import { displayName, type Images, type ResolvedImage } from '../images.js';
import type { Descriptor, Platform } from '../oci.js';

/** Where output goes; resolves when the consumer wants more. */
export type Sink = (chunk: Buffer) => Promise<void>;

export async function exportImages(images: Images, refs: string[], platform: Platform, sink: Sink): Promise<string[]> {
  const resolved: ResolvedImage[] = [];
  for (const ref of refs) resolved.push(await images.resolve(await images.find(ref, platform), platform));

  const blobs = new Map<string, number>();
  const add = (d: Descriptor) => blobs.set(d.digest, d.size);
  const index: Descriptor[] = [];
  const dockerManifest = new Map<string, { Config: string; RepoTags: string[]; Layers: string[] }>();
  for (const r of resolved) {
    add(r.manifestDesc);
    add(r.configDesc);
    for (const l of r.manifest.layers) add(l);
    const named = !r.record.name.startsWith('<none>');
    const tag = named ? parseReference(r.record.name).tag : undefined;
    const annotations: Record<string, string> = named ? { 'io.containerd.image.name': r.record.name } : {};
    if (tag) annotations['org.opencontainers.image.ref.name'] = tag;
    index.push({
      mediaType: r.manifestDesc.mediaType,
      digest: r.manifestDesc.digest,
      size: r.manifestDesc.size,
      annotations,
    });
    const path = (d: string) => `blobs/sha256/${d.slice(7)}`;
    const entry = dockerManifest.get(r.configDesc.digest) ?? {
      Config: path(r.configDesc.digest),
      RepoTags: [],
      Layers: r.manifest.layers.map((l) => path(l.digest)),
    };
    if (named && tag) entry.RepoTags.push(displayName(r.record.name));
    dockerManifest.set(r.configDesc.digest, entry);
  }

  const file = async (path: string, data: Buffer) => {
    await sink(header({ path, type: 'file', size: data.length, mode: 0o644 }));
    await sink(data);
    await sink(padding(data.length));
  };
  await sink(header({ path: 'blobs/', type: 'dir', mode: 0o755 }));
  await sink(header({ path: 'blobs/sha256/', type: 'dir', mode: 0o755 }));
  for (const [digest, size] of blobs) {
    const path = images.content.blobPath(digest);
    await sink(header({ path: `blobs/sha256/${digest.slice(7)}`, type: 'file', size, mode: 0o444 }));
    let sent = 0;
    for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
      sent += (chunk as Buffer).length;
      await sink(chunk as Buffer);
    }
    if (sent !== size) throw new Error(`blob ${digest} changed while it was saved`);
    await sink(padding(size));
  }
  await file('oci-layout', Buffer.from('{"imageLayoutVersion":"1.0.0"}'));
  await file(
    'index.json',
    Buffer.from(
      JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: index }),
    ),
  );
  await file('manifest.json', Buffer.from(JSON.stringify([...dockerManifest.values()])));
  await sink(trailer());
  return resolved.map((r) => r.record.name);
}
