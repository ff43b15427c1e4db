/**
 * OCI image-spec and Docker schema 2 documents: media types, parsing with the
 * checks a registry's bytes must pass before anything is stored, platform
 * matching, chain ids.
 */
import { createHash } from 'node:crypto';
import { arch } from 'node:os';
import { invalidArgument } from '@ctr/common/errors';
import { checkDigest } from '@ctr/common/reference';

export const MediaType = {
  OciIndex: 'application/vnd.oci.image.index.v1+json',
  OciManifest: 'application/vnd.oci.image.manifest.v1+json',
  OciConfig: 'application/vnd.oci.image.config.v1+json',
  OciLayer: 'application/vnd.oci.image.layer.v1.tar',
  OciLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OciLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  DockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  DockerConfig: 'application/vnd.docker.container.image.v1+json',
  DockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  DockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DockerForeignLayerGzip: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  DockerSchema1: 'application/vnd.docker.distribution.manifest.v1+json',
  DockerSchema1Signed: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
} as const;

/** What we ask a registry for, best first; schema 1 is never asked for. */
export const MANIFEST_ACCEPT = [
  MediaType.OciIndex,
  MediaType.DockerList,
  MediaType.OciManifest,
  MediaType.DockerManifest,
].join(', ');

/** Manifests and indexes larger than this are refused (as containerd does). */
export const MAX_MANIFEST_BYTES = 4 << 20;

const LAYER_TYPES = new Set<string>([
  MediaType.OciLayer,
  MediaType.OciLayerGzip,
  MediaType.OciLayerZstd,
  MediaType.DockerLayer,
  MediaType.DockerLayerGzip,
  MediaType.DockerForeignLayerGzip,
  'application/vnd.oci.image.layer.nondistributable.v1.tar',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.oci.image.layer.nondistributable.v1.tar+zstd',
]);
const CONFIG_TYPES = new Set<string>([MediaType.OciConfig, MediaType.DockerConfig]);

export const isIndexType = (t: string) => t === MediaType.OciIndex || t === MediaType.DockerList;
export const isManifestType = (t: string) => t === MediaType.OciManifest || t === MediaType.DockerManifest;
export const isLayerType = (t: string) => LAYER_TYPES.has(t);

export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
  'os.version'?: string;
}

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
  urls?: string[];
}

export interface Index {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
  annotations?: Record<string, string>;
}

export interface Manifest {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface ImageConfig {
  created?: string;
  architecture: string;
  os: string;
  variant?: string;
  config?: Record<string, unknown>;
  rootfs: { type: string; diff_ids: string[] };
  history?: unknown[];
}

/** The platform this host runs, as an image index names it. */
export function hostPlatform(): Platform {
  const a = arch();
  if (a === 'x64') return { os: 'linux', architecture: 'amd64' };
  if (a === 'arm64') return { os: 'linux', architecture: 'arm64', variant: 'v8' };
  if (a === 'arm') return { os: 'linux', architecture: 'arm', variant: 'v7' };
  if (a === 'ia32') return { os: 'linux', architecture: '386' };
  return { os: 'linux', architecture: a };
}

export const formatPlatform = (p: Platform) => [p.os, p.architecture, p.variant].filter(Boolean).join('/');

/** Whether a manifest for `have` runs on `want` (arm64's variant is optional, as in containerd). */
export function platformMatches(have: Platform | undefined, want: Platform): boolean {
  if (!have) return false;
  if (have.os !== want.os || have.architecture !== want.architecture) return false;
  if (!want.variant || !have.variant) return true;
  return have.variant === want.variant;
}

function parseJson(bytes: Uint8Array, what: string): Record<string, unknown> {
  let doc: unknown;
  try {
    doc = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (err) {
    throw invalidArgument(`${what} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc))
    throw invalidArgument(`${what} is not a JSON object`);
  return doc as Record<string, unknown>;
}

function checkDescriptor(d: unknown, what: string): Descriptor {
  const desc = d as Descriptor;
  if (typeof desc !== 'object' || desc === null) throw invalidArgument(`${what}: not a descriptor`);
  if (typeof desc.mediaType !== 'string' || !desc.mediaType) throw invalidArgument(`${what}: no media type`);
  checkDigest(desc.digest, what);
  if (!Number.isSafeInteger(desc.size) || desc.size < 0) throw invalidArgument(`${what}: bad size ${desc.size}`);
  return desc;
}

/** The media type a document declares, or the one the registry said it is. */
function documentType(doc: Record<string, unknown>, served: string): string {
  const declared = typeof doc.mediaType === 'string' ? doc.mediaType : '';
  if (doc.schemaVersion === 1 || served === MediaType.DockerSchema1 || served === MediaType.DockerSchema1Signed)
    throw invalidArgument(
      'Docker Image Format v1 and Docker Image manifest version 2, schema 1 are not supported: push the image again with a current client to convert it',
    );
  if (doc.schemaVersion !== 2) throw invalidArgument(`unsupported manifest schemaVersion ${String(doc.schemaVersion)}`);
  if (declared) return declared;
  if (Array.isArray(doc.manifests)) return MediaType.OciIndex;
  if (doc.config) return MediaType.OciManifest;
  return served;
}

export type Document =
  | { kind: 'index'; mediaType: string; index: Index }
  | { kind: 'manifest'; mediaType: string; manifest: Manifest };

/** Parses and checks a manifest or index as fetched (refusing schema 1, oversize and unknown types). */
export function parseDocument(bytes: Uint8Array, served = '', what = 'manifest'): Document {
  if (bytes.length > MAX_MANIFEST_BYTES)
    throw invalidArgument(`${what} is ${bytes.length} bytes, over the ${MAX_MANIFEST_BYTES}-byte limit`);
  const doc = parseJson(bytes, what);
  const mediaType = documentType(doc, served.split(';')[0].trim());
  if (isIndexType(mediaType)) {
    if (!Array.isArray(doc.manifests)) throw invalidArgument(`${what}: an index without manifests`);
    for (const [i, m] of (doc.manifests as unknown[]).entries()) checkDescriptor(m, `${what}: manifests[${i}]`);
    return { kind: 'index', mediaType, index: doc as unknown as Index };
  }
  if (isManifestType(mediaType)) {
    const config = checkDescriptor(doc.config, `${what}: config`);
    if (!CONFIG_TYPES.has(config.mediaType))
      throw invalidArgument(`${what}: unsupported config media type ${config.mediaType} (not a container image)`);
    if (!Array.isArray(doc.layers)) throw invalidArgument(`${what}: a manifest without layers`);
    for (const [i, l] of (doc.layers as unknown[]).entries()) {
      const d = checkDescriptor(l, `${what}: layers[${i}]`);
      if (!isLayerType(d.mediaType)) throw invalidArgument(`${what}: unsupported layer media type ${d.mediaType}`);
    }
    return { kind: 'manifest', mediaType, manifest: doc as unknown as Manifest };
  }
  throw invalidArgument(`unsupported manifest media type ${mediaType || '(none)'}`);
}

/** Parses an image config and checks it against its manifest's layer count. */
export function parseConfig(bytes: Uint8Array, layers: number): ImageConfig {
  const doc = parseJson(bytes, 'image config') as unknown as ImageConfig;
  const diffIds = doc.rootfs?.diff_ids;
  if (!Array.isArray(diffIds)) throw invalidArgument('image config has no rootfs.diff_ids');
  for (const [i, d] of diffIds.entries()) checkDigest(d, `image config: rootfs.diff_ids[${i}]`);
  if (diffIds.length !== layers)
    throw invalidArgument(`image config lists ${diffIds.length} layers, the manifest ${layers}`);
  return doc;
}

/** Picks the manifest for `want` from an index; docker's message when none fits. */
export function pickManifest(index: Index, want: Platform): Descriptor {
  const candidates = index.manifests.filter((m) => isManifestType(m.mediaType) && platformMatches(m.platform, want));
  const exact = candidates.find((m) => m.platform?.variant === want.variant);
  const pick = exact ?? candidates[0];
  if (!pick) throw invalidArgument(`no matching manifest for ${formatPlatform(want)} in the manifest list entries`);
  return pick;
}

/** The chain ids of a layer stack (image-spec): each names the snapshot of that layer on its parents. */
export function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) {
    const prev = out.at(-1);
    out.push(prev ? `sha256:${createHash('sha256').update(`${prev} ${d}`).digest('hex')}` : d);
  }
  return out;
}

export const sha256 = (b: Uint8Array | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
