import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import type { MessagePort } from 'node:worker_threads';

/** A blob read with large buffers (1 MiB: fewer, bigger decompression calls). */
export function fromFile(path: string): Readable {
  return createReadStream(path, { highWaterMark: 1 << 20 });
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
