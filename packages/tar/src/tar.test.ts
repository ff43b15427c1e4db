import { execFileSync } from 'node:child_process';
import { linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lsetxattr } from '@ctr/sys';
import { gzipSync, zstdCompressSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { DecompressError, decompress, detectCompression } from './compression.js';
import { TarFormatError, TarReader } from './reader.js';
import type { TarEntry } from './types.js';
import { pack } from './writer.js';

interface Read extends TarEntry {
  data: string;
}

/** Reads a whole archive, fed in chunks of `chunk` bytes. */
function readAll(buf: Buffer, chunk = buf.length): Read[] {
  const out: Read[] = [];
  const r = new TarReader({
    entry: (e) => out.push({ ...e, data: '' }),
    data: (d) => {
      out[out.length - 1].data += d.toString('latin1');
    },
    end: () => {},
  });
  for (let i = 0; i < buf.length; i += chunk) r.write(buf.subarray(i, i + chunk));
  r.end();
  return out;
}

const tmp = mkdtempSync(join(tmpdir(), 'ctr-tar-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('tar reader', () => {
  const src = join(tmp, 'src');
  const longDir = `${'d'.repeat(120)}/${'e'.repeat(120)}`;
  mkdirSync(join(src, longDir), { recursive: true });
  writeFileSync(join(src, longDir, `${'f'.repeat(200)}.txt`), 'long\n');
  writeFileSync(join(src, 'caps'), 'x'.repeat(5000));
  lsetxattr(join(src, 'caps'), 'user.note', Buffer.from('hello'));
  symlinkSync(`../${'t'.repeat(150)}`, join(src, 'longlink'));
  linkSync(join(src, 'caps'), join(src, 'hard'));
  writeFileSync(join(src, 'héllo wörld'), '');

  for (const format of ['pax', 'gnu']) {
    it(`reads GNU tar's ${format} archives exactly, in any chunking`, () => {
      const archive = execFileSync('tar', [`--format=${format}`, '--xattrs', '-C', src, '-cf', '-', '.']);
      const whole = readAll(archive);
      expect(readAll(archive, 1)).toEqual(whole);
      expect(readAll(archive, 777)).toEqual(whole);
      const byPath = new Map(whole.map((e) => [e.path.replace(/\/$/, ''), e]));
      expect(byPath.get(`./${longDir}/${'f'.repeat(200)}.txt`)?.data).toBe('long\n');
      expect(byPath.get('./longlink')).toMatchObject({ type: 'symlink', linkname: `../${'t'.repeat(150)}` });
      const caps = byPath.get('./caps');
      const hard = byPath.get('./hard');
      // GNU tar stores the first name it meets as the file, the other as a link to it.
      const [file, link] = caps?.type === 'file' ? [caps, hard] : [hard, caps];
      expect(file?.data).toBe('x'.repeat(5000));
      expect(link).toMatchObject({ type: 'link', size: 0 });
      if (format === 'pax') expect(file?.xattrs.get('user.note')?.toString()).toBe('hello');
      expect(byPath.get('./héllo wörld')?.type).toBe('file');
      expect(byPath.get(`./${longDir}`)?.type).toBe('dir');
    });
  }

  it('writes archives GNU tar reads back identically', () => {
    const archive = pack([
      { path: 'dir/', type: 'dir', mode: 0o1777, uid: 1000, gid: 3000000, mtime: { sec: 1700000000, nsec: 5 } },
      { path: `dir/${'n'.repeat(180)}`, type: 'file', mode: 0o4755, data: 'payload' },
      { path: 'dir/link', type: 'symlink', linkname: '/abs/target' },
      { path: 'dir/null', type: 'chardev', mode: 0o666, devmajor: 1, devminor: 3 },
      { path: 'dir/caps', type: 'file', xattrs: new Map([['security.capability', Buffer.from([1, 0, 0, 2, 0xff])]]) },
    ]);
    writeFileSync(join(tmp, 'ours.tar'), archive);
    const listing = execFileSync('tar', ['--numeric-owner', '-tvf', join(tmp, 'ours.tar')], { encoding: 'utf8' });
    expect(listing).toMatch(/^drwxrwxrwt 1000\/3000000 .* dir\/$/m);
    expect(listing).toMatch(new RegExp(`^-rwsr-xr-x 0/0 +7 .* dir/${'n'.repeat(180)}$`, 'm'));
    expect(listing).toMatch(/^lrwxrwxrwx .* dir\/link -> \/abs\/target$/m);
    expect(listing).toMatch(/^crw-rw-rw- 0\/0 +1,3 .* dir\/null$/m);
    const back = readAll(archive);
    expect(back[0].mtime).toEqual({ sec: 1700000000, nsec: 5 });
    expect(back[4].xattrs.get('security.capability')).toEqual(Buffer.from([1, 0, 0, 2, 0xff]));
  });

  it('refuses a corrupt header, a truncated archive, sparse files and unknown types', () => {
    const good = pack([{ path: 'a', type: 'file', data: 'x'.repeat(1000) }]);
    const corrupt = Buffer.from(good);
    corrupt[10] ^= 0xff;
    expect(() => readAll(corrupt)).toThrow(/invalid tar header checksum at byte 0/);
    expect(() => readAll(good.subarray(0, 700))).toThrow(/truncated/);
    expect(() => readAll(good.subarray(0, 300))).toThrow(TarFormatError);
    // Ending cleanly between entries without the two zero blocks is accepted (Go writers that were cut short).
    expect(readAll(good.subarray(0, 1536))).toHaveLength(1);
    const sparse = Buffer.from(good);
    sparse[156] = 'S'.charCodeAt(0);
    fixChecksum(sparse);
    expect(() => readAll(sparse)).toThrow(/sparse files are not supported/);
    const odd = Buffer.from(good);
    odd[156] = 'Z'.charCodeAt(0);
    fixChecksum(odd);
    expect(() => readAll(odd)).toThrow(/unsupported tar entry type "Z"/);
  });

  it('reads base-256 numbers and pax overrides', () => {
    const a = pack([{ path: 'big', type: 'file', uid: 2 ** 33, gid: 7 }]);
    expect(readAll(a)[0]).toMatchObject({ uid: 2 ** 33, gid: 7 });
    const b = Buffer.from(pack([{ path: 'b', type: 'file' }]));
    b.fill(0, 108, 116);
    b[108] = 0x80;
    b[115] = 0x2a;
    fixChecksum(b);
    expect(readAll(b)[0].uid).toBe(42);
  });
});

function fixChecksum(block: Buffer): void {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += block[i];
  block.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
}

describe('decompress', () => {
  const data = pack([{ path: 'a', type: 'file', data: 'x'.repeat(10_000) }]);
  const collect = async (chunks: Buffer[]) => {
    const out: Buffer[] = [];
    for await (const c of decompress(
      (async function* () {
        yield* chunks;
      })(),
    ))
      out.push(c);
    return Buffer.concat(out);
  };
  const bytewise = (b: Buffer) => [...b].map((x) => Buffer.from([x]));

  it('recognises gzip, zstd and none by magic bytes, even fed a byte at a time', async () => {
    expect(detectCompression(gzipSync(data))).toBe('gzip');
    expect(detectCompression(zstdCompressSync(data))).toBe('zstd');
    expect(detectCompression(data)).toBe('none');
    for (const packed of [gzipSync(data), zstdCompressSync(data), data]) {
      expect((await collect(bytewise(packed.subarray(0, 64)).concat([packed.subarray(64)]))).equals(data)).toBe(true);
    }
    expect((await collect([Buffer.from([1])])).equals(Buffer.from([1]))).toBe(true);
  });

  it('fails a truncated stream with the compression named', async () => {
    const gz = gzipSync(data);
    const err = await collect([gz.subarray(0, gz.length - 20)]).catch((e) => e);
    expect(err).toBeInstanceOf(DecompressError);
    expect(err.message).toMatch(/^the gzip stream is corrupt or truncated/);
  });
});
