/**
 * Layers applied through the snapshotter's ApplyLayer, as ctrd runs it: the
 * mounted result compared with `umoci unpack` (an independent implementation)
 * of the same image, and what must hold when applies fail, race or are cut
 * short by kill -9.
 */
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { zstdCompressSync } from 'node:zlib';
import { type ApplyLayerResponse, SnapshotsService } from '@ctr/api/snapshots/v1/snapshots';
import type { Mount } from '@ctr/api/types/v1/types';
import { type ApiClient, readStream } from '@ctr/common/grpc';
import { lsetxattr } from '@ctr/sys';
import { type EntryInit, pack } from '@ctr/tar';
import { buildOciLayout, fileTree, TestEngine, waitFor, withSnapshotMounted } from '@ctr/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

type Entry = EntryInit & { data?: string | Buffer };

let engine: TestEngine;
let snaps: ApiClient<typeof SnapshotsService>;
let target: string;

beforeAll(async () => {
  engine = await TestEngine.start();
  snaps = engine.client(SnapshotsService, 'snapshotter');
  target = join(engine.dir, 'mnt');
  await mkdir(target, { recursive: true });
});
afterAll(async () => {
  await engine?.stop();
});

const sha256 = (b: Buffer | string) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
/** The chain ids of layers (image-spec: sha256 of "parent-chain-id diff-id"). */
function chainIds(diffIds: string[]): string[] {
  const out: string[] = [];
  for (const d of diffIds) out.push(out.length ? sha256(`${out[out.length - 1]} ${d}`) : d);
  return out;
}

const lsetxattrOn = (path: string, name: string, value: string) => lsetxattr(path, name, Buffer.from(value));

const withMount = <T>(mounts: Mount[], fn: (dir: string) => Promise<T>) => withSnapshotMounted(mounts, target, fn);

/** ApplyLayer with the layer streamed in chunks (or read by the daemon from `path`). */
function applyLayer(
  header: { name: string; parent: string; expectedDiffId?: string; path?: string; afterParent?: boolean },
  data?: Buffer,
  chunk = 64 * 1024,
): { response: Promise<ApplyLayerResponse>; send: (from: number, to?: number) => void; end: () => void } {
  const { stream, response } = snaps.applyLayer();
  stream.write({
    part: {
      $case: 'header',
      value: {
        mediaType: '',
        expectedDiffId: '',
        path: '',
        labels: {},
        follow: false,
        size: 0n,
        afterParent: false,
        ...header,
      },
    },
  });
  const send = (from: number, to = data?.length ?? 0) => {
    for (let i = from; i < to; i += chunk)
      stream.write({ part: { $case: 'chunk', value: (data as Buffer).subarray(i, Math.min(i + chunk, to)) } });
  };
  return { response, send, end: () => stream.end() };
}

async function applyAll(header: Parameters<typeof applyLayer>[0], data?: Buffer) {
  const a = applyLayer(header, data);
  if (data) a.send(0);
  a.end();
  return a.response;
}

const list = async () => {
  const out: string[] = [];
  for await (const r of readStream(snaps.list({ filters: [] }))) out.push(...r.info.map((i) => i.name));
  return out.sort();
};
const snapshotDirs = () => readdirSync(join(engine.root, 'snapshots/overlay2/snapshots')).sort();

const capNetRaw = Buffer.from('0100000200200000000000000000000000000000', 'hex');
const longName = `deep/${'x'.repeat(120)}/${'y'.repeat(150)}.txt`;

/** Three layers that exercise what image layers do (see the list). */
const LAYERS: Entry[][] = [
  [
    { path: 'etc/', type: 'dir' },
    { path: 'etc/passwd', type: 'file', data: 'root:x:0:0::/root:/bin/sh\n' },
    { path: 'etc/shadow', type: 'file', mode: 0o640, gid: 42, data: 'root:*:1::::::\n' },
    { path: 'usr/', type: 'dir' },
    { path: 'usr/bin/', type: 'dir' },
    { path: 'usr/bin/su', type: 'file', mode: 0o4755, data: 'su binary' },
    {
      path: 'usr/bin/ping',
      type: 'file',
      mode: 0o755,
      data: 'ping',
      xattrs: new Map([['security.capability', capNetRaw]]),
    },
    { path: 'usr/bin/a', type: 'file', mode: 0o755, data: 'same inode' },
    { path: 'usr/bin/b', type: 'link', linkname: 'usr/bin/a' },
    { path: 'usr/lib/', type: 'dir', mode: 0o750, gid: 7 },
    { path: 'usr/lib/libx.so', type: 'file', data: 'libx' },
    { path: 'bin', type: 'symlink', linkname: 'usr/bin' },
    { path: 'tmp/', type: 'dir', mode: 0o1777 },
    { path: 'dev/', type: 'dir' },
    { path: 'dev/null', type: 'chardev', mode: 0o666, devmajor: 1, devminor: 3 },
    { path: 'dev/loop0', type: 'blockdev', mode: 0o660, gid: 6, devmajor: 7, devminor: 0 },
    { path: 'dev/initctl', type: 'fifo', mode: 0o600 },
    { path: 'home/', type: 'dir' },
    { path: 'home/user/', type: 'dir', mode: 0o700, uid: 1000, gid: 1000 },
    {
      path: 'home/user/.profile',
      type: 'file',
      uid: 1000,
      gid: 1000,
      data: 'export PS1\n',
      xattrs: new Map([['user.origin', Buffer.from('layer one')]]),
    },
    { path: 'srv/', type: 'dir', mode: 0o2775, gid: 50 },
    { path: 'opq/', type: 'dir' },
    { path: 'opq/a', type: 'file', data: 'a' },
    { path: 'opq/sub/', type: 'dir' },
    { path: 'opq/sub/c', type: 'file', data: 'c' },
    { path: 'del/', type: 'dir' },
    { path: 'del/gone', type: 'file', data: 'gone' },
    { path: 'del/stay', type: 'file', data: 'stay' },
    { path: 'replace-me', type: 'file', data: 'a file first' },
    { path: 'dir-to-file/', type: 'dir' },
    { path: 'dir-to-file/child', type: 'file', data: 'child' },
    { path: 'recreate', type: 'file', data: 'v1' },
    { path: longName, type: 'file', data: 'long' },
    { path: 'unicodé/файл', type: 'file', data: 'utf-8 names' },
  ],
  [
    { path: 'del/.wh.gone', type: 'file' },
    { path: 'opq/', type: 'dir' },
    { path: 'opq/.wh..wh..opq', type: 'file' },
    { path: 'opq/new', type: 'file', data: 'new' },
    { path: 'replace-me/', type: 'dir', mode: 0o711 },
    { path: 'replace-me/inside', type: 'file', data: 'now a directory' },
    { path: 'dir-to-file', type: 'file', data: 'now a file' },
    { path: '.wh.recreate', type: 'file' },
    // No entries for usr/ and usr/lib/: they come up from layer one with their owner and mode.
    { path: 'usr/lib/newlib.so', type: 'file', data: 'newlib' },
    // Through layer one's relative symlink bin -> usr/bin.
    { path: 'bin/via-link', type: 'file', mode: 0o755, data: 'through the symlink' },
    { path: 'etc/passwd', type: 'file', data: 'root:x:0:0::/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n' },
    { path: 'usr/bin/su', type: 'file', mode: 0o755, data: 'su binary' },
  ],
  [
    { path: 'recreate', type: 'file', data: 'v3' },
    { path: 'replace-me', type: 'file', data: 'a file again' },
    { path: 'dir-to-file/', type: 'dir' },
    { path: 'dir-to-file/.wh..wh..opq', type: 'file' },
    { path: 'dir-to-file/new-child', type: 'file', data: 'new child' },
    { path: 'l3/', type: 'dir' },
    { path: 'l3/x', type: 'file', data: 'linked twice' },
    { path: 'l3/y', type: 'link', linkname: 'l3/x' },
    { path: 'opq/new2', type: 'file', data: 'new2' },
    { path: 'del/.wh.stay', type: 'file' },
  ],
];

describe('ApplyLayer', () => {
  it('gives the same tree as umoci unpack for a multi-layer image (gzip from a file, zstd streamed)', async () => {
    const tars = LAYERS.map((l) => pack(l));
    const image = await buildOciLayout(join(engine.dir, 'oci'), tars);
    const bundle = join(engine.dir, 'umoci-bundle');
    execFileSync('umoci', ['unpack', '--image', `${image.dir}:latest`, bundle], { stdio: 'pipe' });
    const expected = await fileTree(join(bundle, 'rootfs'));

    const chain = chainIds(image.diffIds);
    for (let i = 0; i < tars.length; i++) {
      const r = await applyAll({
        name: chain[i],
        parent: chain[i - 1] ?? '',
        expectedDiffId: image.diffIds[i],
        path: join(image.dir, 'blobs/sha256', image.layerDigests[i].slice(7)),
      });
      expect(r).toEqual({ diffId: image.diffIds[i], size: BigInt(tars[i].length) });
    }
    const view = await snaps.view({ key: 'umoci-view', parent: chain[2], labels: {} });
    // Each layer's usage, measured as it was applied, is what du-like counting of its directory says (find, inodes once).
    const lowers = (view.mounts[0].options.find((o) => o.startsWith('lowerdir=')) ?? '').slice(9).split(':');
    for (const [i, dir] of lowers.entries()) {
      const seen = new Map<string, number>();
      for (const line of execFileSync('find', [dir, '-mindepth', '1', '-printf', '%i %b\n'], { encoding: 'utf8' })
        .trim()
        .split('\n')) {
        const [ino, blocks] = line.split(' ');
        seen.set(ino, Number(blocks));
      }
      const blocks = [...seen.values()].reduce((a, b) => a + b, 0);
      expect(await snaps.usage({ key: chain[chain.length - 1 - i] })).toEqual({
        size: BigInt(blocks * 512),
        inodes: BigInt(seen.size),
      });
    }
    const ours = await withMount(view.mounts, (d) => fileTree(d));
    expect(ours).toEqual(expected);
    // What the test is about is in both trees.
    expect(ours['usr/bin/ping'].xattrs).toEqual({ 'security.capability': capNetRaw.toString('base64') });
    expect(ours['usr/lib/newlib.so']).toBeDefined();
    expect(ours['usr/lib']).toMatchObject({ mode: '750', owner: '0:7' });
    expect(ours['usr/bin/via-link']).toBeDefined();
    expect(ours['del/gone']).toBeUndefined();
    expect(Object.keys(ours).filter((p) => p.startsWith('opq/'))).toEqual(['opq/new', 'opq/new2']);

    // The same layers zstd-compressed and streamed over the socket, as a second chain.
    const zchain = chain;
    for (let i = 0; i < tars.length; i++)
      await applyAll(
        { name: `z-${zchain[i]}`, parent: i ? `z-${zchain[i - 1]}` : '', expectedDiffId: image.diffIds[i] },
        zstdCompressSync(tars[i]),
      );
    const active = await snaps.prepare({ key: 'z-active', parent: `z-${zchain[2]}`, labels: {} });
    expect(await withMount(active.mounts, (d) => fileTree(d))).toEqual(expected);

    for (const k of ['z-active', 'umoci-view', ...[...zchain].reverse().map((c) => `z-${c}`), ...[...chain].reverse()])
      await snaps.remove({ key: k });
    expect(await list()).toEqual([]);
  });

  it('applies layers side by side with after_parent, each committed onto its parent once that is in', async () => {
    const tars = LAYERS.map((l) => pack(l));
    const image = await buildOciLayout(join(engine.dir, 'oci-side'), tars);
    const bundle = join(engine.dir, 'umoci-side');
    execFileSync('umoci', ['unpack', '--image', `${image.dir}:latest`, bundle], { stdio: 'pipe' });
    const expected = await fileTree(join(bundle, 'rootfs'));
    const chain = chainIds(image.diffIds).map((c) => `side-${c}`);
    const header = (i: number) => ({
      name: chain[i],
      parent: chain[i - 1] ?? '',
      expectedDiffId: image.diffIds[i],
      path: join(image.dir, 'blobs/sha256', image.layerDigests[i].slice(7)),
      afterParent: true,
    });
    // The top layers first: each is unpacked at once and waits for its parent's commit. The client
    // keeps its stream open (its end would withdraw the layer). Layer two wrote through layer one's
    // symlink bin -> usr/bin, so it is unpacked again once layer one is in.
    await snaps.cleanup({});
    const dirsBefore = snapshotDirs().length;
    const top = [2, 1].map((i) => applyLayer(header(i)));
    await waitFor(() => snapshotDirs().length === dirsBefore + 2, 'the top layers being unpacked');
    const bottom = await applyAll(header(0));
    expect(bottom.diffId).toBe(image.diffIds[0]);
    const answers = await Promise.all(top.map((a) => a.response));
    expect(answers.map((a) => a.diffId)).toEqual([image.diffIds[2], image.diffIds[1]]);
    for (const a of top) a.end();
    const infos = await Promise.all(chain.map((c) => snaps.stat({ key: c })));
    expect(infos.map((i) => i.parent)).toEqual(['', chain[0], chain[1]]);
    const view = await snaps.view({ key: 'side-view', parent: chain[2], labels: {} });
    const ours = await withMount(view.mounts, (d) => fileTree(d));
    expect(ours).toEqual(expected);
    expect(ours['usr/lib']).toMatchObject({ mode: '750', owner: '0:7' });
    expect(ours['usr/bin/via-link']).toBeDefined();
    for (const k of ['side-view', ...[...chain].reverse()]) await snaps.remove({ key: k });
    expect(await list()).toEqual([]);
  });

  it('drops a layer waiting for its parent when the client withdraws it, and answers once it is gone', async () => {
    await snaps.cleanup({});
    const dirsBefore = snapshotDirs();
    const tar = pack(LAYERS[2]);
    const path = join(engine.dir, 'orphan.tar');
    await writeFile(path, tar);
    const a = applyLayer({ name: 'orphan', parent: 'never-applied', path, afterParent: true });
    await waitFor(() => snapshotDirs().length > dirsBefore.length, 'the layer being unpacked');
    await new Promise((r) => setTimeout(r, 200));
    a.end();
    expect(((await a.response.catch((e: Error) => e)) as Error).message).toMatch(/withdrew/);
    expect(await list()).toEqual([]);
    await snaps.cleanup({});
    expect(snapshotDirs()).toEqual(dirsBefore);
    // Without after_parent a missing parent is what it always was: an error at once.
    expect(
      ((await applyAll({ name: 'orphan', parent: 'never-applied', path }).catch((e) => e)) as Error).message,
    ).toMatch(/parent snapshot never-applied does not exist/);
  });

  it('leaves no snapshot behind when a layer is bad, and says why in one line', async () => {
    await snaps.cleanup({}); // once the directories of snapshots removed before are gone (Remove does not wait)
    const dirsBefore = snapshotDirs();
    const tar = pack(LAYERS[0]);
    const cases: Array<[Parameters<typeof applyLayer>[0], Buffer | undefined, RegExp]> = [
      [{ name: 'bad-digest', parent: '', expectedDiffId: `sha256:${'1'.repeat(64)}` }, tar, /not the expected/],
      [{ name: 'truncated', parent: '' }, tar.subarray(0, 3000), /truncated/],
      [{ name: 'escape', parent: '' }, pack([{ path: '../x', type: 'file' }]), /climbs out/],
      [{ name: 'no-parent', parent: 'nope' }, tar, /parent snapshot nope does not exist/],
      [{ name: 'no-file', parent: '', path: '/nonexistent/layer.tar' }, undefined, /does not exist/],
      [{ name: '.extract/x', parent: '' }, tar, /reserved/],
      [{ name: 'bad-id', parent: '', expectedDiffId: 'md5:1' }, tar, /invalid diff id/],
    ];
    for (const [header, data, reason] of cases) {
      const err = await applyAll(header, data).catch((e: Error) => e);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(reason);
      expect((err as Error).message).not.toContain('\n');
    }
    expect(await list()).toEqual([]);
    expect(snapshotDirs()).toEqual(dirsBefore);
  });

  it('commits one snapshot when two applies of the same layer race', async () => {
    const tar = pack(LAYERS[0]);
    const results = await Promise.allSettled([
      applyAll({ name: 'race', parent: '' }, tar),
      applyAll({ name: 'race', parent: '' }, tar),
    ]);
    const ok = results.filter((r) => r.status === 'fulfilled');
    const failed = results.filter((r) => r.status === 'rejected') as PromiseRejectedResult[];
    expect(ok.length).toBeGreaterThanOrEqual(1);
    for (const f of failed) expect(String(f.reason.message)).toMatch(/already exists/);
    expect(await list()).toEqual(['race']);
    expect(snapshotDirs()).toHaveLength(1);
    await snaps.remove({ key: 'race' });
  });

  it('diffs an active snapshot into a layer that applies back to the same tree', async () => {
    await applyAll({ name: 'rt-base', parent: '' }, pack(LAYERS[0]));
    const work = await snaps.prepare({ key: 'rt-work', parent: 'rt-base', labels: {} });
    const changed = await withMount(work.mounts, async (d) => {
      execFileSync(
        'sh',
        [
          '-c',
          [
            'rm etc/shadow',
            'rm -r opq && mkdir opq && echo fresh > opq/only',
            'echo added > usr/bin/tool && chmod 4711 usr/bin/tool && ln usr/bin/tool usr/bin/tool2',
            'mkfifo dev/newfifo && mknod dev/zero c 1 5',
            'ln -s ../usr/bin/tool bin/t && chown -h 1000:1000 bin/t',
            'echo more >> etc/passwd && chmod 600 etc/passwd',
            'rm replace-me && mkdir replace-me',
          ].join(' && '),
        ],
        { cwd: d },
      );
      lsetxattrOn(join(d, 'usr/bin/tool'), 'user.kind', 'tool');
      return fileTree(d);
    });
    const parts: Buffer[] = [];
    let last: { diffId: string; digest: string; size: bigint } | undefined;
    for await (const c of readStream(snaps.diff({ key: 'rt-work', compression: 'gzip' }))) {
      parts.push(c.data);
      if (c.diffId) last = c;
    }
    const blob = Buffer.concat(parts);
    expect(last?.digest).toBe(sha256(blob));
    expect(last?.size).toBe(BigInt(blob.length));
    await applyAll({ name: 'rt-top', parent: 'rt-base', expectedDiffId: last?.diffId }, blob);
    const v = await snaps.view({ key: 'rt-view', parent: 'rt-top', labels: {} });
    expect(await withMount(v.mounts, (d) => fileTree(d))).toEqual(changed);
    expect(changed['etc/shadow']).toBeUndefined();
    expect(changed['usr/bin/tool']).toMatchObject({ mode: '4711', links: 2 });
    for (const k of ['rt-view', 'rt-top', 'rt-work', 'rt-base']) await snaps.remove({ key: k });
  });

  it('after kill -9 in the middle of an apply, keeps what was committed and drops the half-applied layer', async () => {
    await snaps.cleanup({}); // the directories of the snapshots removed before are gone
    await applyAll({ name: 'base', parent: '' }, pack(LAYERS[0]));
    const files: Entry[] = Array.from({ length: 2000 }, (_, i) => ({
      path: `many/f${i}`,
      type: 'file',
      data: `file ${i}`,
    }));
    const tar = pack([{ path: 'many/', type: 'dir' }, ...files]);
    const half = applyLayer({ name: 'top', parent: 'base' }, tar, 4096);
    half.response.catch(() => undefined);
    half.send(0, Math.floor(tar.length / 2));
    await waitFor(async () => (await list()).some((k) => k.startsWith('.extract/')), 'the apply to start');
    const extracting = snapshotDirs();
    expect(extracting).toHaveLength(2);
    await engine.crashService('snapshotter');
    await expect(half.response).rejects.toThrow();

    expect(await list()).toEqual(['base']);
    expect(snapshotDirs()).toHaveLength(1);
    const v = await snaps.view({ key: 'after-crash', parent: 'base', labels: {} });
    await withMount(v.mounts, async (d) => expect(await readFile(join(d, 'etc/passwd'), 'utf8')).toContain('root'));
    // And the layer applies whole afterwards.
    await applyAll({ name: 'top', parent: 'base' }, tar);
    for (const k of ['after-crash', 'top', 'base']) await snaps.remove({ key: k });
  });
});
