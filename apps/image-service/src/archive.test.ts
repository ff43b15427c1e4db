/**
 * push, save, load and import against independent implementations: what we
 * push skopeo pulls back; what we save skopeo reads as a docker-archive and
 * as an OCI archive; what skopeo writes in either format we load; a rootfs
 * tarball imports as a runnable one-layer image. Bad tarballs store nothing.
 */
import { execFileSync } from 'node:child_process';
import { createReadStream, createWriteStream, readdirSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { ContentService } from '@ctr/api/content/v1/content';
import { type Image, ImagesService, type TransferProgress } from '@ctr/api/images/v1/images';
import { SnapshotsService } from '@ctr/api/snapshots/v1/snapshots';
import { fromGrpcError } from '@ctr/common/errors';
import { type ApiClient, readStream } from '@ctr/common/grpc';
import {
  buildBusyboxRootfs,
  buildOciLayout,
  fileTree,
  type LayoutImage,
  pushLayout,
  TestEngine,
  TestRegistry,
  tarLayer,
  withSnapshotMounted,
} from '@ctr/testkit';
import { pack } from '@ctr/tar';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let engine: TestEngine;
let registry: TestRegistry;
let authRegistry: TestRegistry;
let images: ApiClient<typeof ImagesService>;
let content: ApiClient<typeof ContentService>;
let snaps: ApiClient<typeof SnapshotsService>;
let app: LayoutImage;
let expectedTree: Awaited<ReturnType<typeof fileTree>>;
const creds = { username: 'pusher', password: 'push-pass' };

beforeAll(async () => {
  [engine, registry, authRegistry] = await Promise.all([
    TestEngine.start(),
    TestRegistry.start(),
    TestRegistry.start({ auth: creds }),
  ]);
  images = engine.client(ImagesService, 'image-service');
  content = engine.client(ContentService, 'image-service');
  snaps = engine.client(SnapshotsService, 'snapshotter');
  const rootfs = join(engine.dir, 'rootfs');
  await buildBusyboxRootfs(rootfs);
  app = await buildOciLayout(
    join(engine.dir, 'app-oci'),
    [await tarLayer(rootfs), pack([{ path: 'etc/release', type: 'file', data: 'app 1\n' }])],
    { Cmd: ['sh'] },
    '1',
  );
  await pushLayout(app.dir, '1', `${registry.host}/app:1`);
  const bundle = join(engine.dir, 'umoci');
  execFileSync('umoci', ['unpack', '--image', `${app.dir}:1`, bundle], { stdio: 'pipe' });
  expectedTree = await fileTree(join(bundle, 'rootfs'));
}, 120_000);

afterAll(async () => {
  // The registry stops even when the engine's teardown fails its leak check.
  try {
    await engine?.stop();
  } finally {
    await registry?.stop();
  }
  await authRegistry?.stop();
});

async function transfer(stream: ReturnType<typeof images.pull>) {
  const progress: TransferProgress[] = [];
  let image: Image | undefined;
  for await (const p of readStream(stream)) {
    progress.push(p);
    if (p.image) image = p.image;
  }
  return { image: image as Image, progress };
}
const pull = (ref: string) => transfer(images.pull({ ref, unpack: true, maxConcurrentDownloads: 3 }));

const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected a failure');
    },
    (err: Error & { kind?: string }) => `${err.kind}: ${err.message}`,
  );

/** save: the Export stream into a file. */
async function save(refs: string[], file: string) {
  const out = createWriteStream(file);
  for await (const c of readStream(images.export({ refs }))) out.write(c.data);
  await new Promise((r) => out.end(r));
}

/** load/import: a file sent in chunks over the Import stream. */
async function load(file: string, rootfsRef = ''): Promise<Image[]> {
  const call = images.import();
  const result = new Promise<Image[]>((resolve, reject) => {
    let got: Image[] = [];
    call.on('data', (r: { images: Image[] }) => (got = r.images));
    call.on('end', () => resolve(got));
    call.on('error', (err) => reject(fromGrpcError(err)));
  });
  call.write({ part: { $case: 'header', value: { rootfsRef, path: '', labels: {} } } });
  for await (const c of createReadStream(file, { highWaterMark: 256 << 10 }))
    call.write({ part: { $case: 'chunk', value: c as Buffer } });
  call.end();
  return result;
}

async function removeAll() {
  for (const i of (await images.list({ filters: [] })).images) await images.delete({ ref: i.name, force: true });
}

async function expectNothingStored() {
  expect((await images.list({ filters: [] })).images).toEqual([]);
  expect(readdirSync(join(engine.root, 'content/blobs/sha256'))).toEqual([]);
  expect(readdirSync(join(engine.root, 'content/ingest'))).toEqual([]);
  const names: string[] = [];
  for await (const r of readStream(snaps.list({ filters: [] }))) names.push(...r.info.map((i) => i.name));
  expect(names).toEqual([]);
}

/** The image's unpacked tree equals umoci's, and its busybox runs. */
async function expectRunnable(ref: string, tree = expectedTree) {
  const cfg = await images.config({ ref });
  const view = await snaps.view({ key: 'check', parent: cfg.chainId, labels: {} });
  const mnt = join(engine.dir, 'mnt');
  execFileSync('mkdir', ['-p', mnt]);
  try {
    await withSnapshotMounted(view.mounts, mnt, async (dir) => {
      expect(await fileTree(dir)).toEqual(tree);
      expect(execFileSync('chroot', [dir, '/bin/echo', 'runs'], { encoding: 'utf8' })).toBe('runs\n');
    });
  } finally {
    await snaps.remove({ key: 'check' });
  }
}

const skopeoJson = (args: string[]) => JSON.parse(execFileSync('skopeo', args, { encoding: 'utf8' }));

describe('push', () => {
  it('pushes an image that skopeo pulls back byte for byte, mounting blobs the registry has in another repository', async () => {
    await pull(`${registry.host}/app:1`);
    await images.tag({ source: `${registry.host}/app:1`, target: `${registry.host}/copy/app:2` });
    const { image, progress } = await transfer(images.push({ ref: `${registry.host}/copy/app:2` }));
    expect(image.id).toBe(app.configDigest);
    const messages = progress.filter((p) => p.descriptor).map((p) => p.message);
    expect(messages.filter((m) => m === 'Mounted from app').length).toBe(3);
    expect(progress.at(-1)?.message).toBe(app.manifestDigest);

    const out = join(engine.dir, 'skopeo-pulled');
    execFileSync('skopeo', [
      'copy',
      '--quiet',
      '--src-tls-verify=false',
      `docker://${registry.host}/copy/app:2`,
      `oci:${out}:x`,
    ]);
    const index = JSON.parse(await readFile(join(out, 'index.json'), 'utf8'));
    expect(index.manifests[0].digest).toBe(app.manifestDigest);

    // A fresh repository on another registry: every blob uploaded.
    await images.tag({ source: `${registry.host}/app:1`, target: `${authRegistry.host}/team/app:3` });
    expect(await failure(transfer(images.push({ ref: `${authRegistry.host}/team/app:3` })))).toMatch(
      /^Unauthenticated: push access denied for .*team\/app/,
    );
    await images.login({ registry: authRegistry.host, ...creds });
    const second = await transfer(images.push({ ref: `${authRegistry.host}/team/app:3` }));
    const pushed = second.progress.filter((p) => p.message === 'Pushed').map((p) => p.descriptor?.digest);
    expect(new Set(pushed)).toEqual(new Set([...app.layerDigests, app.configDigest]));
    const inspected = skopeoJson([
      'inspect',
      '--tls-verify=false',
      '--creds',
      `${creds.username}:${creds.password}`,
      `docker://${authRegistry.host}/team/app:3`,
    ]);
    expect(inspected.Digest).toBe(app.manifestDigest);
    // Pushed again: the registry has everything.
    const third = await transfer(images.push({ ref: `${authRegistry.host}/team/app:3` }));
    expect(third.progress.filter((p) => p.message === 'Layer already exists').length).toBe(3);
    await images.logout({ registry: authRegistry.host });
    await removeAll();
    await expectNothingStored();
  });
});

describe('save and load', () => {
  it('saves a tarball that skopeo reads as a docker-archive and as an OCI archive', async () => {
    await pull(`${registry.host}/app:1`);
    const file = join(engine.dir, 'saved.tar');
    await save([`${registry.host}/app:1`], file);

    const fromDocker = join(engine.dir, 'from-docker-archive');
    execFileSync('skopeo', ['copy', '--quiet', `docker-archive:${file}`, `oci:${fromDocker}:x`]);
    const dockerCfg = skopeoJson(['inspect', '--config', `oci:${fromDocker}:x`]);
    expect(dockerCfg.rootfs.diff_ids).toEqual(app.diffIds);
    const fromOci = join(engine.dir, 'from-oci-archive');
    execFileSync('skopeo', ['copy', '--quiet', `oci-archive:${file}:1`, `oci:${fromOci}:x`]);
    const index = JSON.parse(await readFile(join(fromOci, 'index.json'), 'utf8'));
    expect(index.manifests[0].digest).toBe(app.manifestDigest);
    // And we read our own back after the image is gone.
    await removeAll();
    const loaded = await load(file);
    expect(loaded.map((i) => [i.name, i.id])).toEqual([[`${registry.host}/app:1`, app.configDigest]]);
    await expectRunnable(`${registry.host}/app:1`);
    await removeAll();
    await expectNothingStored();
  });

  it('loads what skopeo writes: a docker-archive (named) and an OCI archive (unnamed, gzip-compressed)', async () => {
    const dockerFile = join(engine.dir, 'skopeo-docker.tar');
    execFileSync('skopeo', ['copy', '--quiet', `oci:${app.dir}:1`, `docker-archive:${dockerFile}:saved/app:1`]);
    const [d] = await load(dockerFile);
    expect(d).toMatchObject({ name: 'docker.io/saved/app:1', id: app.configDigest, layerDiffIds: app.diffIds });
    await expectRunnable('saved/app:1');

    const ociFile = join(engine.dir, 'skopeo-oci.tar');
    execFileSync('skopeo', ['copy', '--quiet', `oci:${app.dir}:1`, `oci-archive:${ociFile}:1`]);
    await writeFile(`${ociFile}.gz`, gzipSync(await readFile(ociFile)));
    const [o] = await load(`${ociFile}.gz`);
    expect(o.name).toBe(`<none>@${app.manifestDigest}`);
    expect(o.id).toBe(app.configDigest);
    expect((await images.list({ filters: ['dangling=true'] })).images.map((i) => i.name)).toEqual([o.name]);
    await expectRunnable(app.configDigest.slice(7, 19));
    await removeAll();
    await expectNothingStored();
  });

  it('imports a root filesystem tarball as a one-layer image that runs', async () => {
    const tar = join(engine.dir, 'rootfs.tar.gz');
    await writeFile(tar, gzipSync(await tarLayer(join(engine.dir, 'rootfs'))));
    const [img] = await load(tar, 'imported:1');
    expect(img.name).toBe('docker.io/library/imported:1');
    expect(img.layerDiffIds.length).toBe(1);
    const busyboxOnly = Object.fromEntries(Object.entries(expectedTree).filter(([p]) => p !== 'etc/release'));
    await expectRunnable('imported:1', busyboxOnly);
    await removeAll();
    await expectNothingStored();
  });

  it.each([
    [
      'garbage',
      () => Buffer.from('this is not a tarball at all, not even close'.repeat(20)),
      '',
      /^InvalidArgument: not a valid tarball/,
    ],
    [
      'a layout lacking a blob',
      () =>
        pack([
          { path: 'oci-layout', type: 'file', data: '{"imageLayoutVersion":"1.0.0"}' },
          {
            path: 'index.json',
            type: 'file',
            data: JSON.stringify({
              schemaVersion: 2,
              manifests: [
                { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest: app.manifestDigest, size: 10 },
              ],
            }),
          },
        ]),
      '',
      /^InvalidArgument: the tarball lacks sha256:/,
    ],
    [
      'a blob whose bytes are not its name',
      () =>
        pack([
          { path: `blobs/sha256/${app.configDigest.slice(7)}`, type: 'file', data: 'not the config' },
          { path: 'index.json', type: 'file', data: '{"schemaVersion":2,"manifests":[]}' },
        ]),
      '',
      /^InvalidArgument: blobs\/sha256\/.* in the tarball: unexpected commit/,
    ],
    [
      'a tarball that is neither format',
      () => pack([{ path: 'hello', type: 'file', data: 'hi' }]),
      '',
      /neither an OCI image layout nor a docker-archive/,
    ],
    [
      'a rootfs that is not a tarball',
      () => gzipSync(Buffer.alloc(5000, 7)),
      'bad:1',
      /^InvalidArgument: not a valid tarball/,
    ],
  ])('%s is one clear error and stores nothing', async (_what, data, rootfsRef, pattern) => {
    const file = join(engine.dir, 'bad.tar');
    await writeFile(file, data());
    expect(await failure(load(file, rootfsRef))).toMatch(pattern);
    await expectNothingStored();
    expect((await content.listStatuses({ filters: [] })).statuses).toEqual([]);
  });
});
