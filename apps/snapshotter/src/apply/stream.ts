/**
 * A layer stream into a snapshot directory: the compression is recognised by
 * its magic bytes (gzip, zstd, or none), the uncompressed bytes are hashed
 * (the diff id) as they are parsed and written.
 */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { decompress, TarReader } from '@ctr/tar';
import { Extractor, LayerError } from '@ctr/tar/extract';
import { type Usage, usageSync } from '../usage.js';

export interface ApplyJob {
  /** The snapshot's own directory. */
  root: string;
  /** Its parents' directories, nearest first. */
  lowers: string[];
  /** It has parents, not yet on disk: see Extractor's `pending` (lowers is then empty). */
  pendingLowers?: boolean;
  /** sha256:<hex> the uncompressed tar must hash to ("" to skip the check). */
  expectedDiffId: string;
  path?: string;
  /** `path` is still being written: read as it grows, to this many bytes (sources.ts followFile). */
  follow?: { size: number };
}

export type ApplyResult =
  | { ok: true; diffId: string; size: number; entries: number; usage: Usage; deferred: string[] }
  | { ok: false; name: string; message: string };

export async function applyStream(job: ApplyJob, source: Readable) {
  const ex = new Extractor(job.root, job.lowers, 'layer entry', job.pendingLowers);
  const hash = createHash('sha256');
  const reader = new TarReader(ex);
  let size = 0;
  try {
    for await (const chunk of decompress(source as AsyncIterable<Buffer>)) {
      hash.update(chunk);
      size += chunk.length;
      reader.write(chunk);
    }
    reader.end();
    // Bytes after the end-of-archive blocks still count toward the digest (they are part of the blob).
    const diffId = `sha256:${hash.digest('hex')}`;
    if (job.expectedDiffId && diffId !== job.expectedDiffId)
      throw new LayerError(`the layer's diff id is ${diffId}, not the expected ${job.expectedDiffId}`);
    ex.finish(!job.pendingLowers);
    return { diffId, size, entries: ex.entries, usage: usageSync(job.root), deferred: ex.deferred };
  } catch (err) {
    ex.close();
    throw err;
  } finally {
    source.destroy();
  }
}
