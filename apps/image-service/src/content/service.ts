/** The content store over gRPC (`ctr.content.v1`), containerd's Content API. */
import { ContentService, type ContentInfo, type WriteContentRequest, WriteAction } from '@ctr/api/content/v1/content';
import { failedPrecondition, invalidArgument } from '@ctr/common/errors';
import { implement } from '@ctr/common/grpc';
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { createReadStream } from 'node:fs';
import type { Images } from '../images.js';
import type { BlobInfo, ContentStore, Writer } from './store.js';

const info = (b: BlobInfo): ContentInfo => ({
  digest: b.digest,
  size: BigInt(b.size),
  createdAt: b.createdAt,
  labels: {},
});

/**
 * One ingest per stream: the first message (STAT or WRITE) opens or resumes
 * `ref`; WRITEs must continue at the ingest's offset; COMMIT verifies and
 * publishes. A stream that ends without COMMIT keeps the bytes for a resume.
 */
async function write(store: ContentStore, call: ServerDuplexStream<WriteContentRequest, unknown>): Promise<void> {
  let w: Writer | undefined;
  try {
    // Iterated by hand: leaving a for-await early would destroy the call before the error status goes out.
    const it = (call as AsyncIterable<WriteContentRequest>)[Symbol.asyncIterator]();
    for (let n = await it.next(); !n.done; n = await it.next()) {
      const req = n.value;
      w ??= await store.writer(req.ref, req.expected, Number(req.total));
      const reply = (action: WriteAction, digest = '') =>
        call.write({ action, offset: BigInt(w?.offset ?? 0), total: BigInt(w?.total ?? 0), digest });
      switch (req.action) {
        case WriteAction.WRITE_ACTION_STAT:
          reply(WriteAction.WRITE_ACTION_STAT);
          break;
        case WriteAction.WRITE_ACTION_WRITE:
          if (Number(req.offset) !== w.offset)
            throw failedPrecondition(`write at offset ${req.offset}, but ingest ${req.ref} is at ${w.offset}`);
          await w.write(req.data);
          reply(WriteAction.WRITE_ACTION_WRITE);
          break;
        case WriteAction.WRITE_ACTION_COMMIT: {
          const digest = await w.commit(Number(req.total) || w.total, req.expected || w.expected);
          reply(WriteAction.WRITE_ACTION_COMMIT, digest);
          return;
        }
        default:
          throw invalidArgument(`unknown write action ${req.action}`);
      }
    }
  } finally {
    await w?.close();
  }
}

export function contentApi(store: ContentStore, images: Images) {
  return implement(ContentService, {
    info: async ({ digest }) => info(await store.info(digest)),
    list: async (_req, call) => {
      const all = await store.list();
      for (let i = 0; i < all.length; i += 100) call.write({ info: all.slice(i, i + 100).map(info) });
    },
    delete: async ({ digest }) => {
      await store.info(digest);
      await store.delete(digest);
      return {};
    },
    read: async ({ digest, offset, size }, call) => {
      const b = await store.info(digest);
      const start = Number(offset);
      if (start < 0 || start > b.size) throw invalidArgument(`offset ${offset} is outside ${digest} (${b.size} bytes)`);
      const end = size > 0n ? Math.min(b.size, start + Number(size)) : b.size;
      let at = start;
      if (end === start) return;
      for await (const chunk of createReadStream(store.blobPath(digest), {
        start,
        end: end - 1,
        highWaterMark: 1 << 20,
      })) {
        const data = chunk as Buffer;
        if (!call.write({ offset: BigInt(at), data })) await new Promise((r) => call.once('drain', r));
        at += data.length;
      }
    },
    listStatuses: async () => ({
      statuses: (await store.statuses()).map((s) => ({ ...s, offset: BigInt(s.offset), total: BigInt(s.total) })),
    }),
    write: (call) => write(store, call),
    abort: async ({ ref }) => {
      await store.abort(ref);
      return {};
    },
    createLease: async ({ id, ttlSeconds, labels }) => {
      if (!/^[\w.-]{1,128}$/.test(id)) throw invalidArgument(`invalid lease id ${JSON.stringify(id)}`);
      return images.meta.createLease(id, ttlSeconds, labels);
    },
    deleteLease: async ({ id }) => {
      images.meta.deleteLease(id);
      return {};
    },
    garbageCollect: async ({ dryRun }) => {
      const { removed, bytesFreed } = await images.collect(dryRun);
      return { removed, bytesFreed: BigInt(bytesFreed) };
    },
  });
}
