/**
 * The layer applier against malicious and tricky archives, on the real file
 * system: each bad archive must fail with a clear reason and write nothing
 * outside the snapshot's directory. The "host" here is a directory beside the
 * snapshot that the archives aim at with absolute paths, absolute symlinks and
 * `..`; the test compares it, and everything around the snapshot, before and after.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { zstdCompressSync, gzipSync } from 'node:zlib';
import { type EntryInit, pack } from '@ctr/tar';
import { fileTree } from '@ctr/testkit';
import { afterAll, beforeEach, describe, expect, it } from 'vitest';
import { ApplyError, applyLayer } from './apply.js';

type Entry = EntryInit & { data?: string | Buffer };

const sandbox = mkdtempSync('/tmp/ctr-extract-');
const host = join(sandbox, 'host');
const root = join(sandbox, 'snapshot');
afterAll(() => rmSync(sandbox, { recursive: true, force: true }));

beforeEach(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(host, { recursive: true, force: true });
  mkdirSync(root);
  mkdirSync(join(host, 'etc'), { recursive: true });
  writeFileSync(join(host, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\n', { mode: 0o644 });
  writeFileSync(join(host, 'secret'), 'do not touch\n', { mode: 0o600 });
});

const apply = (entries: Entry[], opts: { lowers?: string[]; into?: string } = {}) =>
  applyLayer({ root: opts.into ?? root, lowers: opts.lowers ?? [], expectedDiffId: '', path: write(pack(entries)) });

let n = 0;
function write(data: Buffer): string {
  const p = join(sandbox, `layer-${n++}.tar`);
  writeFileSync(p, data);
  return p;
}

/** Everything in the sandbox except the snapshot itself and the layer files. */
async function outside() {
  const t = await fileTree(sandbox);
  return Object.fromEntries(Object.entries(t).filter(([p]) => !p.startsWith('snapshot/') && !p.startsWith('layer-')));
}

const corpus: Array<[string, Entry[], RegExp]> = [
  ['a name climbing out with ..', [{ path: '../host/pwned', type: 'file', data: 'x' }], /climbs out with "\.\."/],
  [
    'a name climbing out in the middle',
    [{ path: 'a/../../host/pwned', type: 'file', data: 'x' }],
    /climbs out with "\.\."/,
  ],
  ['an absolute name', [{ path: `${host}/pwned`, type: 'file', data: 'x' }], /absolute path .* is refused/],
  [
    'a file through an absolute symlink (docker CVE-2014-9356 style)',
    [
      { path: 'etc', type: 'symlink', linkname: `${host}/etc` },
      { path: 'etc/passwd', type: 'file', data: 'pwned' },
    ],
    /symlink to the absolute path/,
  ],
  [
    'a file through a relative symlink that climbs out',
    [
      { path: 'up', type: 'symlink', linkname: '../host' },
      { path: 'up/pwned', type: 'file', data: 'x' },
    ],
    /leads out of the layer/,
  ],
  [
    'chained relative symlinks that together climb out',
    [
      { path: 'a', type: 'symlink', linkname: 'b/c' },
      { path: 'b', type: 'symlink', linkname: 'd' },
      { path: 'd/', type: 'dir' },
      { path: 'd/c', type: 'symlink', linkname: '../../host' },
      { path: 'a/pwned', type: 'file', data: 'x' },
    ],
    /leads out of the layer/,
  ],
  [
    'a directory replaced by a symlink, then written through (CVE-2018-15664 family)',
    [
      { path: 'dir/', type: 'dir' },
      { path: 'dir/ok', type: 'file', data: 'fine' },
      { path: 'dir', type: 'symlink', linkname: host },
      { path: 'dir/pwned', type: 'file', data: 'x' },
    ],
    /symlink to the absolute path/,
  ],
  [
    'a hard link to a file outside by ..',
    [{ path: 'hl', type: 'link', linkname: '../host/secret' }],
    /climbs out with "\.\."/,
  ],
  [
    'a hard link to an absolute path',
    [{ path: 'hl', type: 'link', linkname: `${host}/secret` }],
    /absolute path .* is refused/,
  ],
  [
    'a hard link through an absolute symlink (CVE-2021-30465 family)',
    [
      { path: 'h', type: 'symlink', linkname: host },
      { path: 'hl', type: 'link', linkname: 'h/secret' },
    ],
    /symlink to the absolute path/,
  ],
  [
    'a symlink loop in a parent path',
    [
      { path: 'l1', type: 'symlink', linkname: 'l2' },
      { path: 'l2', type: 'symlink', linkname: 'l1' },
      { path: 'l1/x', type: 'file', data: 'x' },
    ],
    /too many symlinks/,
  ],
  [
    'an overlay xattr that would redirect a directory to another layer',
    [{ path: 'd/', type: 'dir', xattrs: new Map([['trusted.overlay.redirect', Buffer.from('/host')]]) }],
    /trusted\.overlay\.redirect is refused/,
  ],
  ['a whiteout with no name', [{ path: 'd/.wh..', type: 'file' }], /whiteout without a name/],
  [
    'a file under a file',
    [
      { path: 'f', type: 'file', data: 'x' },
      { path: 'f/g', type: 'file', data: 'y' },
    ],
    /parent "f" is not a directory/,
  ],
];

describe('malicious layers', () => {
  for (const [name, entries, reason] of corpus) {
    it(`refuses ${name}`, async () => {
      const before = await outside();
      const err = await apply(entries).catch((e) => e);
      expect(err).toBeInstanceOf(ApplyError);
      expect((err as ApplyError).badLayer).toBe(true);
      expect((err as Error).message).toMatch(reason);
      expect((err as Error).message).toMatch(/^layer entry "/);
      expect(await outside()).toEqual(before);
    });
  }

  it('replaces a symlink by a directory or file without following it (containerd CVE-2021-32760)', async () => {
    const before = await outside();
    await apply([
      { path: 's', type: 'symlink', linkname: `${host}/secret` },
      { path: 's', type: 'file', mode: 0o777, data: 'mine' },
      { path: 't', type: 'symlink', linkname: `${host}/etc` },
      { path: 't/', type: 'dir', mode: 0o777 },
      { path: 'u', type: 'symlink', linkname: `${host}/etc/passwd` },
      { path: 'u', type: 'chardev', devmajor: 1, devminor: 3, mode: 0o666 },
    ]);
    expect(await outside()).toEqual(before);
    const t = await fileTree(root);
    expect(t.s).toMatchObject({ type: 'file', mode: '777' });
    expect(t.t).toMatchObject({ type: 'dir', mode: '777' });
    expect(t.u).toMatchObject({ type: 'chardev', dev: '1:3' });
  });

  it('keeps symlinks as written, absolute or climbing, since it never follows them at the last component', async () => {
    await apply([
      { path: 'abs', type: 'symlink', linkname: '/etc/shadow' },
      { path: 'up', type: 'symlink', linkname: '../../../../x' },
      { path: 'lib', type: 'symlink', linkname: 'usr/lib' },
      { path: 'usr/lib/', type: 'dir' },
      { path: 'lib/libc.so', type: 'file', data: 'elf' },
    ]);
    const t = await fileTree(root);
    expect(t.abs.link).toBe('/etc/shadow');
    expect(t.up.link).toBe('../../../../x');
    expect(t['usr/lib/libc.so'].sha256).toBeDefined();
  });

  it('fails a corrupt or truncated layer, whatever its compression, with one clear reason', async () => {
    const tar = pack([{ path: 'big', type: 'file', data: Buffer.alloc(100_000, 7) }]);
    const bad = Buffer.from(tar);
    bad[3] ^= 1;
    const run = (data: Buffer) =>
      applyLayer({ root, lowers: [], expectedDiffId: '', path: write(data) }).catch((e: Error) => e.message);
    expect(await run(bad)).toMatch(/invalid tar header checksum at byte 0: the layer is corrupt/);
    expect(await run(tar.subarray(0, 50_000))).toMatch(/truncated/);
    const gz = gzipSync(tar);
    expect(await run(gz.subarray(0, gz.length - 100))).toMatch(/gzip stream is corrupt or truncated/);
    const zst = zstdCompressSync(tar);
    expect(await run(zst.subarray(0, zst.length / 2))).toMatch(/zstd stream is corrupt or truncated|truncated/);
    const wrong = `sha256:${'0'.repeat(64)}`;
    const r = await applyLayer({ root, lowers: [], expectedDiffId: wrong, path: write(gz) }).catch((e) => e);
    expect(r.message).toMatch(/diff id is sha256:[0-9a-f]{64}, not the expected sha256:0{64}/);
  });

  it('keeps mtimes to the nanosecond, directories last so their children do not move them', async () => {
    const t = { sec: 1_600_000_000, nsec: 123_456_789 };
    await apply([
      { path: 'd/', type: 'dir', mtime: t },
      { path: 'd/f', type: 'file', data: 'x', mtime: { sec: 1_500_000_000, nsec: 1 } },
      { path: 'd/s', type: 'symlink', linkname: 'f', mtime: { sec: 1_400_000_000, nsec: 0 } },
    ]);
    const { lstatSync } = await import('node:fs');
    const ns = (p: string) => lstatSync(join(root, p), { bigint: true }).mtimeNs;
    expect(ns('d')).toBe(1_600_000_000_123_456_789n);
    expect(ns('d/f')).toBe(1_500_000_000_000_000_001n);
    expect(ns('d/s')).toBe(1_400_000_000_000_000_000n);
  });

  it('reads its input as streamed chunks too, and computes the diff id of the uncompressed bytes', async () => {
    const tar = pack([
      { path: 'd/', type: 'dir', mode: 0o750, uid: 5, gid: 6 },
      { path: 'd/f', type: 'file', data: 'hello' },
    ]);
    async function* chunks() {
      const z = zstdCompressSync(tar);
      for (let i = 0; i < z.length; i += 7) yield z.subarray(i, i + 7);
    }
    const r = await applyLayer({ root, lowers: [], expectedDiffId: '' }, chunks());
    const { createHash } = await import('node:crypto');
    expect(r.diffId).toBe(`sha256:${createHash('sha256').update(tar).digest('hex')}`);
    expect(r.size).toBe(tar.length);
    const t = await fileTree(root);
    expect(t.d).toMatchObject({ mode: '750', owner: '5:6' });
  });

  it('follows a layer file as it is written, to its size, and fails one whose writer ends short', async () => {
    const tar = pack([
      { path: 'd/', type: 'dir' },
      { path: 'd/big', type: 'file', data: Buffer.alloc(300_000, 5) },
      { path: 'd/f', type: 'file', data: 'hello' },
    ]);
    const gz = gzipSync(tar, { level: 0 });
    const { appendFileSync } = await import('node:fs');
    const { setTimeout: sleep } = await import('node:timers/promises');
    // The writer: the layer in pieces, with pauses the reader must wait out; then its end.
    const follow = async (bytes: number) => {
      const path = write(Buffer.alloc(0));
      let done!: () => void;
      const ended = new Promise<void>((r) => {
        done = r;
      });
      // The client's stream: no chunks, and its end once the writer is done.
      const writerEnd: AsyncIterable<Uint8Array> = {
        [Symbol.asyncIterator]: () => ({
          next: async () => {
            await ended;
            return { done: true, value: undefined };
          },
        }),
      };
      const applying = applyLayer(
        { root, lowers: [], expectedDiffId: '', path, follow: { size: gz.length } },
        writerEnd,
      ).catch((e: Error) => e);
      for (let i = 0; i < bytes; i += 50_000) {
        appendFileSync(path, gz.subarray(i, Math.min(i + 50_000, bytes)));
        await sleep(20);
      }
      done();
      return applying;
    };
    const r = await follow(gz.length);
    if (r instanceof Error) throw r;
    expect(r.size).toBe(tar.length);
    const { createHash } = await import('node:crypto');
    expect((await fileTree(root))['d/f']).toMatchObject({
      size: 5,
      sha256: createHash('sha256').update('hello').digest('hex'),
    });
    rmSync(root, { recursive: true, force: true });
    mkdirSync(root);
    expect(((await follow(gz.length - 1000)) as Error).message).toMatch(/gzip stream is corrupt or truncated/);
  });

  it('applies a layer before its lowers are there, and settles what it took from them once they are', async () => {
    const lower = join(sandbox, 'lower');
    rmSync(lower, { recursive: true, force: true });
    mkdirSync(lower);
    const lowerApplied = await apply(
      [
        { path: 'usr/', type: 'dir', mode: 0o750, uid: 3, gid: 7, mtime: { sec: 1_500_000_000, nsec: 5 } },
        { path: 'usr/lib/', type: 'dir', mode: 0o711, gid: 9 },
        { path: 'opt/', type: 'dir', mode: 0o700 },
        { path: 'gone', type: 'file', data: 'x' },
        { path: 'link', type: 'symlink', linkname: 'usr' },
      ],
      { into: lower },
    );
    expect(lowerApplied.deferred).toEqual([]);
    const { settleDeferred } = await import('@ctr/tar/extract');
    const { lstatSync } = await import('node:fs');
    // The layer above, applied while `lower` is not yet known: usr/, usr/lib/ and new/ are not in it.
    const upper = [
      { path: 'usr/lib/libz.so', type: 'file', data: 'z' },
      { path: 'opt/', type: 'dir', mode: 0o755 }, // its own entry: its mode stands
      { path: 'opt/tool', type: 'file', data: 't' },
      { path: 'new/file', type: 'file', data: 'n' },
      { path: '.wh.gone', type: 'file' },
    ] satisfies Entry[];
    const r = await applyLayer({
      root,
      lowers: [],
      pendingLowers: true,
      expectedDiffId: '',
      path: write(pack(upper)),
    });
    expect(r.deferred).toEqual(['usr', 'new', 'usr/lib']);
    // The whiteout is there though no lower was known: the layer has lowers.
    expect(lstatSync(join(root, 'gone')).isCharacterDevice()).toBe(true);
    expect(settleDeferred(root, [lower], r.deferred)).toBe(true);
    const t = await fileTree(root);
    expect(t.usr).toMatchObject({ mode: '750', owner: '3:7' });
    expect(lstatSync(join(root, 'usr'), { bigint: true }).mtimeNs).toBe(1_500_000_000_000_000_005n);
    expect(t['usr/lib']).toMatchObject({ mode: '711', owner: '0:9' });
    expect(t.opt).toMatchObject({ mode: '755' });
    expect(t.new).toMatchObject({ mode: '755', owner: '0:0' }); // no layer has it: made as docker does

    // A layer that wrote through a lower's symlink cannot be settled: it must be applied again over them.
    rmSync(root, { recursive: true, force: true });
    mkdirSync(root);
    const through = await applyLayer({
      root,
      lowers: [],
      pendingLowers: true,
      expectedDiffId: '',
      path: write(pack([{ path: 'link/via', type: 'file', data: 'v' }])),
    });
    expect(through.deferred).toEqual(['link']);
    expect(settleDeferred(root, [lower], through.deferred)).toBe(false);
  });
});
