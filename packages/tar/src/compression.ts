/**
 * What a tar stream is wrapped in, told by its magic bytes (gzip, zstd or
 * nothing), and the stream unwrapped. Layers and image archives both come
 * this way.
 */
import { Readable } from 'node:stream';
import { createGunzip, createZstdDecompress } from 'node:zlib';

export type Compression = 'gzip' | 'zstd' | 'none';

const ZSTD_MAGIC = 0xfd2fb528;

export function detectCompression(head: Uint8Array): Compression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && Buffer.from(head.buffer, head.byteOffset, 4).readUInt32LE(0) === ZSTD_MAGIC) return 'zstd';
  return 'none';
}

/** A compressed stream that would not decompress: corrupt or cut short. */
export class DecompressError extends Error {
  constructor(
    readonly compression: Compression,
    message: string,
  ) {
    super(message);
    this.name = 'DecompressError';
  }
}

/** The uncompressed bytes of `source`, whatever its compression (any chunking, even a first chunk under 4 bytes). */
export async function* decompress(source: AsyncIterable<Buffer>): AsyncGenerator<Buffer> {
  const it = source[Symbol.asyncIterator]();
  let head = Buffer.alloc(0);
  while (head.length < 4) {
    const n = await it.next();
    if (n.done) break;
    head = Buffer.concat([head, n.value]);
  }
  const rest = Readable.from(
    (async function* () {
      if (head.length) yield head;
      for (let n = await it.next(); !n.done; n = await it.next()) yield n.value;
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
    throw new DecompressError(kind, `the ${kind} stream is corrupt or truncated: ${(err as Error).message}`);
  }
}
