/**
 * Test images built here, from Debian's busybox-static: a busybox root
 * filesystem, and OCI image layouts made of any number of layer directories.
 * Layers are tarred by GNU tar with fixed owners and times, so digests are
 * reproducible.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, copyFile, mkdir, readFile, symlink, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { mustRun } from './util.js';

export const BUSYBOX = '/bin/busybox';

/** A minimal root filesystem: busybox and a link per applet, /etc files, empty system dirs. */
export async function buildBusyboxRootfs(dir: string): Promise<void> {
  for (const d of ['bin', 'etc', 'tmp', 'root', 'proc', 'sys', 'dev', 'var/www', 'home']) {
    await mkdir(join(dir, d), { recursive: true });
  }
  await chmod(join(dir, 'tmp'), 0o1777);
  await copyFile(BUSYBOX, join(dir, 'bin/busybox'));
  await chmod(join(dir, 'bin/busybox'), 0o755);
  const applets = (await mustRun(BUSYBOX, ['--list'])).split('\n').filter((a) => a && a !== 'busybox');
  for (const a of applets) await symlink('busybox', join(dir, 'bin', a)).catch(() => undefined);
  await writeFile(
    join(dir, 'etc/passwd'),
    'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n',
  );
  await writeFile(join(dir, 'etc/group'), 'root:x:0:\nnogroup:x:65534:\n');
}

export interface ImageConfigInput {
  Cmd?: string[];
  Entrypoint?: string[];
  Env?: string[];
  WorkingDir?: string;
  User?: string;
  ExposedPorts?: Record<string, object>;
  Labels?: Record<string, string>;
}

export interface LayoutImage {
  /** The OCI layout directory. */
  dir: string;
  manifestDigest: string;
  configDigest: string;
  layerDigests: string[];
  diffIds: string[];
}

const sha256 = (data: Buffer) => `sha256:${createHash('sha256').update(data).digest('hex')}`;

async function putBlob(layout: string, data: Buffer): Promise<{ digest: string; size: number }> {
  const digest = sha256(data);
  const blobs = join(layout, 'blobs/sha256');
  await mkdir(blobs, { recursive: true });
  const path = join(blobs, digest.slice(7));
  await writeFile(`${path}.tmp`, data);
  await rename(`${path}.tmp`, path);
  return { digest, size: data.length };
}

/** The uncompressed tar of a directory, as an image layer (root-owned, mtime 0, sorted). */
export async function tarLayer(dir: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const tar = spawn('tar', [
      '-C',
      dir,
      '--sort=name',
      '--mtime=@0',
      '--owner=0',
      '--group=0',
      '--numeric-owner',
      '-cf',
      '-',
      '.',
    ]);
    const chunks: Buffer[] = [];
    let err = '';
    tar.stdout.on('data', (c) => chunks.push(c));
    tar.stderr.on('data', (c) => (err += c));
    tar.on('error', reject);
    tar.on('close', (code) => (code === 0 ? resolve(Buffer.concat(chunks)) : reject(new Error(`tar: ${err}`))));
  });
}

/**
 * Writes an OCI image layout with the given layers (bottom first: directories
 * to tar, or tarballs as they are), gzipped, under `ref` (the org.opencontainers.image.ref.name of index.json).
 */
export async function buildOciLayout(
  layout: string,
  layers: Array<string | Buffer>,
  config: ImageConfigInput = {},
  ref = 'latest',
): Promise<LayoutImage> {
  await mkdir(layout, { recursive: true });
  const layerDescs = [];
  const diffIds = [];
  for (const layer of layers) {
    const tar = typeof layer === 'string' ? await tarLayer(layer) : layer;
    diffIds.push(sha256(tar));
    const blob = await putBlob(layout, gzipSync(tar));
    layerDescs.push({ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', ...blob });
  }
  const imageConfig = {
    created: '2026-01-01T00:00:00Z',
    architecture: 'amd64',
    os: 'linux',
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], ...config },
    rootfs: { type: 'layers', diff_ids: diffIds },
    history: layers.map(() => ({ created: '2026-01-01T00:00:00Z', created_by: 'ctr testkit' })),
  };
  const cfg = await putBlob(layout, Buffer.from(JSON.stringify(imageConfig)));
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...cfg },
    layers: layerDescs,
  };
  const man = await putBlob(layout, Buffer.from(JSON.stringify(manifest)));
  const indexPath = join(layout, 'index.json');
  const index = JSON.parse(await readFile(indexPath, 'utf8').catch(() => '{"schemaVersion":2,"manifests":[]}'));
  index.manifests = index.manifests.filter(
    (m: { annotations?: Record<string, string> }) => m.annotations?.['org.opencontainers.image.ref.name'] !== ref,
  );
  index.manifests.push({
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    ...man,
    annotations: { 'org.opencontainers.image.ref.name': ref },
    platform: { architecture: 'amd64', os: 'linux' },
  });
  await writeFile(indexPath, JSON.stringify(index));
  await writeFile(join(layout, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return {
    dir: layout,
    manifestDigest: man.digest,
    configDigest: cfg.digest,
    layerDigests: layerDescs.map((l) => l.digest),
    diffIds,
  };
}

/** A one-layer busybox image (Cmd sh) as an OCI layout. */
export async function buildBusyboxImage(workDir: string, ref = 'latest'): Promise<LayoutImage> {
  const rootfs = join(workDir, 'busybox-rootfs');
  await buildBusyboxRootfs(rootfs);
  return buildOciLayout(join(workDir, 'busybox-oci'), [rootfs], { Cmd: ['sh'] }, ref);
}

/** Copies an OCI layout image into a registry with skopeo (an independent implementation). */
export async function pushLayout(
  layoutDir: string,
  ref: string,
  dest: string,
  creds?: { username: string; password: string },
): Promise<void> {
  const args = ['copy', '--quiet', '--dest-tls-verify=false'];
  if (creds) args.push('--dest-creds', `${creds.username}:${creds.password}`);
  await mustRun('skopeo', [...args, `oci:${layoutDir}:${ref}`, `docker://${dest}`], { timeoutMs: 120_000 });
}
