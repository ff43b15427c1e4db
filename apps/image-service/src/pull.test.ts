/**
 * Pulls from a real registry (Debian's docker-registry on loopback) of images
 * pushed by skopeo, through image-service as ctrd runs it: the unpacked
 * rootfs against umoci's, auth (basic, bearer), bad input leaving nothing,
 * retries, a pull resumed after kill -9, and GC after rmi.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { ContentService } from '@ctr/api/content/v1/content';
import { type Image, ImagesService, type TransferProgress, TransferState } from '@ctr/api/images/v1/images';
import { SnapshotsService } from '@ctr/api/snapshots/v1/snapshots';
import { type ApiClient, readStream } from '@ctr/common/grpc';
import { pack } from '@ctr/tar';
import {
  buildBusyboxRootfs,
  buildOciLayout,
  fileTree,
  freePort,
  type LayoutImage,
  pushLayout,
  RegistryProxy,
  TestEngine,
  TestRegistry,
  tarLayer,
  waitFor,
  withSnapshotMounted,
} from '@ctr/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let engine: TestEngine;
let registry: TestRegistry;
let authRegistry: TestRegistry;
let proxy: RegistryProxy;
let images: ApiClient<typeof ImagesService>;
let content: ApiClient<typeof ContentService>;
let snaps: ApiClient<typeof SnapshotsService>;
let app: LayoutImage;
let closedPort: number;
const creds = { username: 'tester', password: 's3cret-pass' };
const BIG = 6 << 20;

beforeAll(async () => {
  [engine, registry, authRegistry] = await Promise.all([
    TestEngine.start(),
    TestRegistry.start(),
    TestRegistry.start({ auth: creds }),
  ]);
  proxy = await RegistryProxy.start(registry.host);
  closedPort = await freePort();
  images = engine.client(ImagesService, 'image-service');
  content = engine.client(ContentService, 'image-service');
  snaps = engine.client(SnapshotsService, 'snapshotter');

  const rootfs = join(engine.dir, 'busybox-rootfs');
  await buildBusyboxRootfs(rootfs);
  app = await buildOciLayout(
    join(engine.dir, 'app-oci'),
    [
      await tarLayer(rootfs),
      pack([
        { path: 'etc/', type: 'dir', mode: 0o755 },
        { path: 'etc/hello', type: 'file', data: 'hello from layer 2\n' },
        { path: 'big.bin', type: 'file', data: randomBytes(BIG) },
        { path: 'gone', type: 'file', data: 'deleted by layer 3' },
      ]),
      pack([
        { path: '.wh.gone', type: 'file', data: '' },
        { path: 'etc/', type: 'dir', mode: 0o755 },
        { path: 'etc/motd', type: 'file', data: 'layer 3\n' },
      ]),
    ],
    { Cmd: ['sh'] },
    '1',
  );
  await Promise.all([
    pushLayout(app.dir, '1', `${registry.host}/app:1`),
    pushLayout(app.dir, '1', `${authRegistry.host}/private/app:1`, creds),
  ]);
}, 120_000);

afterAll(async () => {
  await proxy?.stop();
  // The registry stops even when the engine's teardown fails its leak check.
  try {
    await engine?.stop();
  } finally {
    await registry?.stop();
  }
  await authRegistry?.stop();
});

async function pull(
  ref: string,
  extra: { username?: string; password?: string; platform?: { os: string; architecture: string } } = {},
) {
  const progress: TransferProgress[] = [];
  let image: Image | undefined;
  const auth = extra.username
    ? { username: extra.username, password: extra.password ?? '', identityToken: '' }
    : undefined;
  for await (const p of readStream(
    images.pull({
      ref,
      unpack: true,
      maxConcurrentDownloads: 3,
      auth,
      platform: extra.platform && { ...extra.platform, variant: '', osVersion: '' },
    }),
  )) {
    progress.push(p);
    if (p.image) image = p.image;
  }
  if (!image) throw new Error('the pull ended without an image');
  return { image, progress };
}

const failure = (p: Promise<unknown>) =>
  p.then(
    () => {
      throw new Error('expected a failure');
    },
    (err: Error & { kind?: string }) => `${err.kind}: ${err.message}`,
  );

const blobs = () => readdirSync(join(engine.root, 'content/blobs/sha256')).sort();
const ingests = () => readdirSync(join(engine.root, 'content/ingest'));
async function snapshotNames() {
  const out: string[] = [];
  for await (const r of readStream(snaps.list({ filters: [] }))) out.push(...r.info.map((i) => i.name));
  return out.sort();
}

async function removeAll() {
  for (const i of (await images.list({ filters: [] })).images) await images.delete({ ref: i.name, force: true });
  await content.garbageCollect({ dryRun: false });
}

async function expectNothingStored() {
  expect((await images.list({ filters: [] })).images).toEqual([]);
  expect(blobs()).toEqual([]);
  expect(ingests()).toEqual([]);
  // The second names the snapshotter followed the bottom layer's download by.
  expect(readdirSync(join(engine.root, 'content/follow'))).toEqual([]);
  expect(await snapshotNames()).toEqual([]);
}

describe('pull', () => {
  it('unpacks a three-layer image that equals umoci unpack of the same layout, and runs it', async () => {
    const { image, progress } = await pull(`${registry.host}/app:1`);
    expect(image).toMatchObject({
      name: `${registry.host}/app:1`,
      id: app.configDigest,
      layerDiffIds: app.diffIds,
    });
    expect(image.target?.digest).toBe(app.manifestDigest);
    // Progress: per layer, from waiting to done; the big layer reported while it downloads.
    for (const digest of app.layerDigests) {
      const states = progress.filter((p) => p.descriptor?.digest === digest).map((p) => p.state);
      expect(states[0]).toBe(TransferState.TRANSFER_STATE_WAITING);
      expect(states).toContain(TransferState.TRANSFER_STATE_EXTRACTING);
      expect(states.at(-1)).toBe(TransferState.TRANSFER_STATE_DONE);
    }

    const cfg = await images.config({ ref: `${registry.host}/app:1` });
    const bundle = join(engine.dir, 'umoci-app');
    execFileSync('umoci', ['unpack', '--image', `${app.dir}:1`, bundle], { stdio: 'pipe' });
    const expected = await fileTree(join(bundle, 'rootfs'));
    const view = await snaps.view({ key: 'check-view', parent: cfg.chainId, labels: {} });
    const mnt = join(engine.dir, 'mnt');
    execFileSync('mkdir', ['-p', mnt]);
    await withSnapshotMounted(view.mounts, mnt, async (dir) => {
      expect(await fileTree(dir)).toEqual(expected);
      // The unpacked busybox runs, and sees what layers 2 and 3 did.
      const out = execFileSync('chroot', [dir, '/bin/sh', '-c', 'cat /etc/hello /etc/motd; ls /gone 2>&1; echo ok'], {
        encoding: 'utf8',
      });
      expect(out).toBe('hello from layer 2\nlayer 3\nls: /gone: No such file or directory\nok\n');
    });
    await snaps.remove({ key: 'check-view' });

    // A second pull finds everything there.
    const again = await pull(`${registry.host}/app:1`);
    expect(again.image.id).toBe(app.configDigest);
    const states = again.progress.filter((p) => p.descriptor).map((p) => p.state);
    expect(states).not.toContain(TransferState.TRANSFER_STATE_DOWNLOADING);
  });

  it('rmi removes the image, its content and its layer snapshots', async () => {
    await images.tag({ source: `${registry.host}/app:1`, target: `${registry.host}/app:other` });
    // Untagging one name keeps the image for the other.
    const first = await images.delete({ ref: `${registry.host}/app:1`, force: false });
    expect(first).toEqual({ untagged: [`${registry.host}/app:1`], deleted: [] });
    expect(blobs().length).toBe(5);
    const second = await images.delete({ ref: `${registry.host}/app:other`, force: false });
    expect(second.deleted[0]).toBe(app.configDigest);
    await expectNothingStored();
  });

  it('picks linux/amd64 from a multi-platform index, and refuses a platform the index lacks', async () => {
    // An index of two platforms, built by hand and copied by skopeo with --all.
    const layout = join(engine.dir, 'multi-oci');
    const amd = await buildOciLayout(layout, [pack([{ path: 'arch', type: 'file', data: 'amd64\n' }])], {}, 'amd');
    const arm = await buildOciLayout(layout, [pack([{ path: 'arch', type: 'file', data: 'arm64\n' }])], {}, 'arm');
    const indexJson = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.index.v1+json',
      manifests: [
        {
          ...(await descriptorOf(layout, arm.manifestDigest)),
          platform: { os: 'linux', architecture: 'arm64', variant: 'v8' },
        },
        { ...(await descriptorOf(layout, amd.manifestDigest)), platform: { os: 'linux', architecture: 'amd64' } },
      ],
    });
    const { writeFile } = await import('node:fs/promises');
    const { createHash } = await import('node:crypto');
    const idxDigest = `sha256:${createHash('sha256').update(indexJson).digest('hex')}`;
    await writeFile(join(layout, 'blobs/sha256', idxDigest.slice(7)), indexJson);
    await writeFile(
      join(layout, 'index.json'),
      JSON.stringify({
        schemaVersion: 2,
        manifests: [
          {
            mediaType: 'application/vnd.oci.image.index.v1+json',
            digest: idxDigest,
            size: indexJson.length,
            annotations: { 'org.opencontainers.image.ref.name': 'multi' },
          },
        ],
      }),
    );
    execFileSync('skopeo', [
      'copy',
      '--all',
      '--quiet',
      '--dest-tls-verify=false',
      `oci:${layout}:multi`,
      `docker://${registry.host}/multi:1`,
    ]);

    const { image } = await pull(`${registry.host}/multi:1`);
    expect(image.target?.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    expect(image.id).toBe(amd.configDigest);

    const err = await failure(pull(`${registry.host}/multi:1`, { platform: { os: 'linux', architecture: 's390x' } }));
    expect(err).toMatch(/no matching manifest for linux\/s390x in the manifest list entries/);
    await removeAll();
    await expectNothingStored();
  });

  it('pulls with basic auth: refused without credentials, then after login; credentials stored 0600', async () => {
    const ref = `${authRegistry.host}/private/app:1`;
    expect(await failure(pull(ref))).toMatch(/^Unauthenticated: pull access denied for .*private\/app/);
    expect(
      await failure(images.login({ registry: authRegistry.host, username: creds.username, password: 'wrong' })),
    ).toMatch(/^Unauthenticated: .*incorrect username or password/);
    expect(await images.login({ registry: authRegistry.host, ...creds })).toEqual({ status: 'Login Succeeded' });
    const file = join(engine.root, 'images/credentials.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const { image } = await pull(ref);
    expect(image.id).toBe(app.configDigest);
    await images.logout({ registry: authRegistry.host });
    await removeAll();
    expect(await failure(pull(ref))).toMatch(/^Unauthenticated/);
    // Credentials given with the request work too.
    expect((await pull(ref, creds)).image.id).toBe(app.configDigest);
    await removeAll();
    await expectNothingStored();
  });

  it('pulls through a bearer-token challenge, asking for the repository scope', async () => {
    const token = randomBytes(16).toString('hex');
    const scopes: string[] = [];
    proxy.hooks = {
      respond: (req) => {
        if (req.path.startsWith('/token')) {
          const url = new URL(req.path, 'http://x');
          scopes.push(...url.searchParams.getAll('scope'));
          return {
            status: 200,
            headers: { 'content-type': 'application/json' },
            body: JSON.stringify({ token, expires_in: 300 }),
          };
        }
        if (req.headers.authorization !== `Bearer ${token}`)
          return {
            status: 401,
            headers: {
              'www-authenticate': `Bearer realm="http://${proxy.host}/token",service="test-registry",scope="repository:app:pull"`,
            },
            body: '{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}',
          };
        return undefined;
      },
    };
    try {
      const { image } = await pull(`${proxy.host}/app:1`);
      expect(image.id).toBe(app.configDigest);
      expect(new Set(scopes)).toEqual(new Set(['repository:app:pull']));
    } finally {
      proxy.hooks = {};
    }
    await removeAll();
  });
});

/** The descriptor of a blob in a layout. */
async function descriptorOf(layout: string, digest: string) {
  const { stat } = await import('node:fs/promises');
  const size = (await stat(join(layout, 'blobs/sha256', digest.slice(7)))).size;
  return { mediaType: 'application/vnd.oci.image.manifest.v1+json', digest, size };
}

describe('pull failures', () => {
  it.each([
    ['an invalid reference', 'Foo/Bar:x', /^InvalidArgument: invalid reference format/],
    ['a missing repository', () => `${registry.host}/nope:1`, /^NotFound: manifest for .*nope:1 not found/],
    [
      'a missing tag',
      () => `${registry.host}/app:nope`,
      /^NotFound: manifest for .*app:nope not found: manifest unknown/,
    ],
    [
      'a registry that is not there',
      () => `127.0.0.1:${closedPort}/app:1`,
      /^Unavailable: 127\.0\.0\.1:\d+: .*ECONNREFUSED/,
    ],
  ])('%s is one clear error and stores nothing', async (_what, ref, pattern) => {
    const r = typeof ref === 'function' ? ref() : ref;
    expect(await failure(pull(r))).toMatch(pattern);
    await expectNothingStored();
  });

  const manifestFor = (body: string | Buffer, type = 'application/vnd.oci.image.manifest.v1+json') => ({
    respond: (req: { path: string }) =>
      /\/manifests\//.test(req.path) ? { status: 200, headers: { 'content-type': type }, body } : undefined,
  });

  it.each([
    ['malformed JSON', () => manifestFor('{"schemaVersion": 2, "config": '), /manifest is not valid JSON/],
    ['a manifest over 4 MiB', () => manifestFor(Buffer.alloc(5 << 20, 0x20)), /over the 4194304-byte limit/],
    [
      'a schema 1 manifest',
      () =>
        manifestFor(
          '{"schemaVersion":1,"name":"app","tag":"1","fsLayers":[]}',
          'application/vnd.docker.distribution.manifest.v1+prettyjws',
        ),
      /schema 1 are not supported/,
    ],
    [
      'an unsupported media type',
      () =>
        manifestFor(
          JSON.stringify({
            schemaVersion: 2,
            mediaType: 'application/vnd.oci.image.manifest.v1+json',
            config: { mediaType: 'application/vnd.cncf.helm.config.v1+json', digest: app.configDigest, size: 10 },
            layers: [],
          }),
        ),
      /unsupported config media type application\/vnd\.cncf\.helm\.config\.v1\+json/,
    ],
  ])('%s is one clear error and stores nothing', async (_what, hooks, pattern) => {
    proxy.hooks = hooks();
    try {
      expect(await failure(pull(`${proxy.host}/app:1`))).toMatch(pattern);
    } finally {
      proxy.hooks = {};
    }
    await expectNothingStored();
  });

  it.each([
    ['the bottom layer, which the others queue behind', 0],
    ['a layer above it', 1],
  ])('a blob whose bytes do not match its digest (%s) fails the pull and leaves nothing stored', async (_what, i) => {
    const big = app.layerDigests[i];
    proxy.hooks = {
      body: (req, chunk, sent) => {
        if (!req.path.endsWith(big) || sent > 1000) return chunk;
        const bad = Buffer.from(chunk);
        bad[bad.length - 1] ^= 0xff;
        return bad;
      },
    };
    try {
      expect(await failure(pull(`${proxy.host}/app:1`))).toMatch(
        new RegExp(`^FailedPrecondition: blob ${big} from .* failed verification: unexpected commit digest`),
      );
    } finally {
      proxy.hooks = {};
    }
    await expectNothingStored();
  });

  it('retries a registry that answers 503 and a connection dropped mid-blob', async () => {
    const big = app.layerDigests[1];
    let failures = 0;
    let dropped = false;
    proxy.log.length = 0;
    proxy.hooks = {
      respond: (req) =>
        req.path.includes('/manifests/') && failures++ < 2 ? { status: 503, body: 'busy' } : undefined,
      body: (req, chunk, sent) => {
        if (req.path.endsWith(big) && !req.headers.range && sent > BIG / 3 && !dropped) {
          dropped = true;
          throw new Error('drop the connection');
        }
        return chunk;
      },
    };
    try {
      const { image } = await pull(`${proxy.host}/app:1`);
      expect(image.id).toBe(app.configDigest);
    } finally {
      proxy.hooks = {};
    }
    expect(failures).toBeGreaterThanOrEqual(3);
    const gets = proxy.requests(new RegExp(`${big}$`));
    expect(gets.length).toBe(2);
    expect(Number(gets[1].range?.match(/^bytes=(\d+)-$/)?.[1])).toBeGreaterThan(0);
    await removeAll();
  });

  it.each([
    ['a layer above the bottom one', 1],
    ['the bottom layer', 0],
  ])('a pull killed with SIGKILL halfway (%s) resumes where it stopped', async (_what, i) => {
    const big = app.layerDigests[i];
    const size = statSync(join(app.dir, 'blobs/sha256', big.slice(7))).size;
    proxy.log.length = 0;
    // Slow the big layer so the kill lands in the middle of it.
    proxy.hooks = {
      body: async (req, chunk) => {
        if (req.path.endsWith(big)) await new Promise((r) => setTimeout(r, 15));
        return chunk;
      },
    };
    const ref = `${proxy.host}/app:1`;
    const first = pull(ref).catch((err) => err);
    const entry = await waitFor(
      () => proxy.requests(new RegExp(`${big}$`)).find((e) => e.bytes > size / 2),
      'half the big layer',
      {
        timeoutMs: 60_000,
        intervalMs: 5,
      },
    );
    await engine.crashService('image-service');
    expect(await first).toBeInstanceOf(Error);
    // Nothing half-applied stays (an apply under way when its client went away is dropped).
    await waitFor(async () => !(await snapshotNames()).some((n) => n.startsWith('.extract/')), 'no half-applied layer');
    const sentBefore = entry.bytes;
    proxy.hooks = {};
    const { image } = await pull(ref);
    expect(image.id).toBe(app.configDigest);
    const gets = proxy.requests(new RegExp(`${big}$`));
    expect(gets.length).toBe(2);
    const resumedAt = Number(gets[1].range?.match(/^bytes=(\d+)-$/)?.[1]);
    // It continued from what reached the disk, and only the rest crossed the wire again.
    expect(resumedAt).toBeGreaterThan(size / 2 - (1 << 20));
    expect(resumedAt).toBeLessThanOrEqual(sentBefore);
    expect(gets[1].bytes).toBe(size - resumedAt);
    expect(gets[0].bytes + gets[1].bytes).toBeLessThan(size * 1.25);
    await removeAll();
    await expectNothingStored();
  });

  it('two pulls of one image at once fetch each blob once and both succeed', async () => {
    proxy.log.length = 0;
    const [a, b] = await Promise.all([pull(`${proxy.host}/app:1`), pull(`${proxy.host}/app:1`)]);
    expect(a.image.id).toBe(app.configDigest);
    expect(b.image.id).toBe(app.configDigest);
    for (const d of app.layerDigests) expect(proxy.requests(new RegExp(`/blobs/${d}$`)).length).toBe(1);
    await removeAll();
    await expectNothingStored();
  });
});

describe('registry configuration', () => {
  it('pulls through a configured mirror first, falling back to the registry itself', async () => {
    // The "registry" is a loopback port nothing listens on, so a fallback stays on this host.
    const origin = `localhost:${closedPort}`;
    const mirrored = await TestEngine.start({
      config: { registry: { mirrors: { [origin]: [`http://${proxy.host}`] } } },
    });
    try {
      const api = mirrored.client(ImagesService, 'image-service');
      proxy.log.length = 0;
      let image: Image | undefined;
      for await (const p of readStream(api.pull({ ref: `${origin}/app:1`, unpack: true, maxConcurrentDownloads: 3 })))
        image ??= p.image;
      expect(image).toMatchObject({ name: `${origin}/app:1`, id: app.configDigest });
      expect(proxy.requests(/\/v2\/app\/manifests\/1$/).length).toBe(1);
      // The mirror lacks a tag: the registry itself is asked, and its answer (refused) is the one reported.
      const err = await failure(
        (async () => {
          for await (const _ of readStream(
            api.pull({ ref: `${origin}/app:nope`, unpack: true, maxConcurrentDownloads: 3 }),
          ));
        })(),
      );
      expect(err).toMatch(new RegExp(`^Unavailable: ${origin}: .*ECONNREFUSED`));
    } finally {
      await mirrored.stop();
    }
  });
});
