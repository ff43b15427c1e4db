import { createReadStream } from 'node:fs';
import { open } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MessagePort } from 'node:worker_threads';

/** A blob read with large buffers (1 MiB: fewer, bigger decompression calls). */
export function fromFile(path: string): Readable {
  return createReadStream(path, { highWaterMark: 1 << 20 });
}

/** How often a followed file that has no new bytes yet is looked at again. */
const FOLLOW_POLL_MS = 5;

/**
 * A file still being written (a layer's download), read as it grows up to
 * `size` bytes. `{ end: true }` on the port says nothing more will be
 * written: what the file holds then is all there is, short or not (a short
 * layer fails its apply).
 */
export function followFile(path: string, size: number, port: MessagePort): Readable {
  let ended = false;
  port.on('message', (m: { end?: boolean }) => {
    if (m.end) ended = true;
  });
  async function* read(): AsyncGenerator<Buffer> {
    const fh = await open(path, 'r');
    try {
      let pos = 0;
      while (pos < size) {
        // Whether it had ended before this read: then a read that finds nothing is the end.
        const last = ended;
        const buf = Buffer.allocUnsafe(Math.min(1 << 20, size - pos));
        const { bytesRead } = await fh.read(buf, 0, buf.length, pos);
        if (bytesRead > 0) {
          pos += bytesRead;
          yield buf.subarray(0, bytesRead);
        } else if (last) return;
        else await sleep(FOLLOW_POLL_MS);
      }
    } finally {
      await fh.close();
    }
  }
  return Readable.from(read());
}

/** Chunks posted by the daemon: `{ chunk }` messages then `{ end: true }`; each is acknowledged with "more". */
export function fromPort(port: MessagePort): Readable {
  const stream = new Readable({ read() {} });
  port.on('message', (m: { chunk?: Uint8Array; end?: boolean }) => {
    if (m.end) stream.push(null);
    else if (m.chunk) {
      stream.push(Buffer.from(m.chunk.buffer, m.chunk.byteOffset, m.chunk.byteLength));
      port.postMessage('more');
    }
  });
  return stream;
}
