/**
 * A layer stream into a snapshot directory: the compression is recognised by
 * its magic bytes (gzip, zstd, or none), the uncompressed bytes are hashed
 * (the diff id) as they are parsed and written.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { createGunzip, createZstdDecompress } from 'node:zlib';
import { TarReader } from '@ctr/tar';
import { Extractor, LayerError } from './extract.js';

export interface ApplyJob {
  /** The snapshot's own directory. */
  root: string;
  /** Its parents' directories, nearest first. */
  lowers: string[];
  /** sha256:<hex> the uncompressed tar must hash to ("" to skip the check). */
  expectedDiffId: string;
  path?: string;
}

export type ApplyResult =
  | { ok: true; diffId: string; size: number; entries: number }
  | { ok: false; name: string; message: string };

const ZSTD_MAGIC = 0xfd2fb528;

export type Compression = 'gzip' | 'zstd' | 'none';

export function detectCompression(head: Buffer): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === ZSTD_MAGIC) return 'zstd';
  return 'none';
}

/** The uncompressed bytes of a layer, whatever its compression. */
async function* decompressed(source: Readable): AsyncGenerator<Buffer> {
  const it = source[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  while (head.length < 4) {
    const n = await it.next();
    if (n.done) break;
    head = Buffer.concat([head, n.value as Buffer]);
  }
  const rest = Readable.from(
    (async function* () {
      if (head.length) yield head;
      for (;;) {
        const n = await it.next();
        if (n.done) return;
        yield n.value as Buffer;
      }
    })(),
  );
  const kind = detectCompression(head);
  if (kind === 'none') {
    yield* rest;
    return;
  }
  const z = kind === 'gzip' ? createGunzip({ chunkSize: 256 << 10 }) : createZstdDecompress({ chunkSize: 256 << 10 });
  rest.on('error', (err) => z.destroy(err));
  try {
    yield* rest.pipe(z);
  } catch (err) {
    throw new LayerError(`the layer's ${kind} stream is corrupt or truncated: ${(err as Error).message}`);
  }
}

export async function applyStream(job: ApplyJob, source: Readable) {
  const ex = new Extractor(job.root, job.lowers);
  const hash = createHash('sha256');
  const reader = new TarReader(ex);
  let size = 0;
  try {
    for await (const chunk of decompressed(source)) {
      hash.update(chunk);
      size += chunk.length;
      reader.write(chunk);
    }
    reader.end();
    // Bytes after the end-of-archive blocks still count toward the digest (they are part of the blob).
    const diffId = `sha256:${hash.digest('hex')}`;
    if (job.expectedDiffId && diffId !== job.expectedDiffId)
      throw new LayerError(`the layer's diff id is ${diffId}, not the expected ${job.expectedDiffId}`);
    ex.finish();
    return { diffId, size, entries: ex.entries };
  } catch (err) {
    ex.close();
    throw err;
  } finally {
    source.destroy();
  }
}
