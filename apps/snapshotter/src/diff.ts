/**
 * A snapshot's own layer as a layer tarball (what `commit` pushes): its
 * directory walked in name order, overlay's whiteouts turned back into
 * `.wh.NAME` entries and opaque directories into `.wh..wh..opq`, hard links
 * as links to the first name met, xattrs as pax SCHILY.xattr (never
 * overlay's own). The diff id (uncompressed) and digest (as sent) are
 * computed on the way out.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { lgetxattr, llistxattr } from '@ctr/sys';
import { type EntryInit, header, padding, trailer } from '@ctr/tar';

const OVERLAY_XATTR = /^trusted\.overlay\./;

function xattrsOf(path: string): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  for (const name of llistxattr(path)) {
    if (OVERLAY_XATTR.test(name) || name === 'security.selinux') continue;
    const v = lgetxattr(path, name);
    if (v) out.set(name, v);
  }
  return out;
}

const ts = (ns: bigint) => ({ sec: Number(ns / 1_000_000_000n), nsec: Number(ns % 1_000_000_000n) });

/** The uncompressed tar of a layer directory. */
export async function* layerTar(root: string): AsyncGenerator<Buffer> {
  const links = new Map<string, string>();
  async function* walk(rel: string): AsyncGenerator<Buffer> {
    const dir = rel ? join(root, rel) : root;
    for (const name of (await readdir(dir)).sort()) {
      const path = join(dir, name);
      const tarPath = rel ? `${rel}/${name}` : name;
      const st = await lstat(path, { bigint: true });
      const base: EntryInit = {
        path: tarPath,
        type: 'file',
        mode: Number(st.mode & 0o7777n),
        uid: Number(st.uid),
        gid: Number(st.gid),
        mtime: ts(st.mtimeNs),
        xattrs: st.isSymbolicLink() ? new Map() : xattrsOf(path),
      };
      if (st.isCharacterDevice() && st.rdev === 0n) {
        yield header({ path: rel ? `${rel}/.wh.${name}` : `.wh.${name}`, type: 'file', mtime: base.mtime });
      } else if (st.isDirectory()) {
        yield header({ ...base, path: `${tarPath}/`, type: 'dir' });
        if (lgetxattr(path, 'trusted.overlay.opaque')?.toString() === 'y')
          yield header({ path: `${tarPath}/.wh..wh..opq`, type: 'file', mtime: base.mtime });
        yield* walk(tarPath);
      } else if (st.isSymbolicLink()) {
        yield header({ ...base, type: 'symlink', linkname: await readlink(path) });
      } else if (st.isCharacterDevice() || st.isBlockDevice()) {
        // glibc's major()/minor() of a 64-bit dev_t.
        const d = st.rdev;
        yield header({
          ...base,
          type: st.isCharacterDevice() ? 'chardev' : 'blockdev',
          devmajor: Number(((d >> 8n) & 0xfffn) | ((d >> 32n) & ~0xfffn)),
          devminor: Number((d & 0xffn) | ((d >> 12n) & ~0xffn)),
        });
      } else if (st.isFIFO()) {
        yield header({ ...base, type: 'fifo' });
      } else if (st.isFile()) {
        const key = `${st.dev}:${st.ino}`;
        const first = st.nlink > 1n ? links.get(key) : undefined;
        if (first !== undefined) {
          yield header({ ...base, type: 'link', linkname: first });
          continue;
        }
        if (st.nlink > 1n) links.set(key, tarPath);
        const size = Number(st.size);
        yield header({ ...base, size });
        let sent = 0;
        for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) {
          const c = chunk as Buffer;
          // A file that grew while we read it: the header promised `size` bytes.
          const part = c.subarray(0, Math.max(0, size - sent));
          sent += part.length;
          if (part.length) yield part;
        }
        if (sent < size) yield Buffer.alloc(size - sent);
        yield padding(size);
      }
      // Sockets are not carried by layers.
    }
  }
  yield* walk('');
  yield trailer();
}

export interface DiffResult {
  diffId: string;
  digest: string;
  size: number;
}

/**
 * The layer of `root`, compressed or not, handed to `write` in chunks; resolves
 * with the digests once the last byte went out.
 */
export async function diffLayer(
  root: string,
  compression: 'gzip' | 'none',
  write: (chunk: Buffer) => Promise<void>,
): Promise<DiffResult> {
  const uncompressed = createHash('sha256');
  const compressed = createHash('sha256');
  let size = 0;
  const tar = Readable.from(
    (async function* () {
      for await (const b of layerTar(root)) {
        uncompressed.update(b);
        yield b;
      }
    })(),
  );
  const out = compression === 'gzip' ? tar.pipe(createGzip({ chunkSize: 256 << 10 })) : tar;
  tar.on('error', (err) => out.destroy(err));
  for await (const chunk of out) {
    const c = chunk as Buffer;
    compressed.update(c);
    size += c.length;
    await write(c);
  }
  const diffId = `sha256:${uncompressed.digest('hex')}`;
  return { diffId, digest: compression === 'gzip' ? `sha256:${compressed.digest('hex')}` : diffId, size };
}
