/**
 * A snapshot's own layer as a layer tarball (what `commit` pushes): its
 * directory walked in name order, overlay's whiteouts turned back into
 * `.wh.NAME` entries and opaque directories into `.wh..wh..opq`, hard links
 * as links to the first name met, xattrs as pax SCHILY.xattr (never
 * overlay's own). The diff id (uncompressed) and digest (as sent) are
 * computed on the way out.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { createGzip } from 'node:zlib';
import { AT, closeFd, O, openat2 } from '@ctr/sys';
import { directoryTar } from '@ctr/tar/tree';

/** The uncompressed tar of a layer directory. */
export async function* layerTar(root: string): AsyncGenerator<Buffer> {
  const fd = openat2(AT.FDCWD, root, O.RDONLY | O.DIRECTORY, 0, 0);
  try {
    yield* directoryTar(fd, { overlay: true });
  } finally {
    closeFd(fd);
  }
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
