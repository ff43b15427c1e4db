import { createReadStream } from 'node:fs';
import { type Image, ImagesService } from '@ctr/api/images/v1/images';
import { fromGrpcError } from '@ctr/common/errors';
import type { Globals } from '../engine.js';
import { type Command, quietFlag } from '../command.js';
import { repoAndTag } from '../image-common.js';

/** Sends a tarball (a file, or stdin for "-" or no file) over the Import stream. */
export async function sendTarball(globals: Globals, file: string | undefined, rootfsRef = ''): Promise<Image[]> {
  const input = file && file !== '-' ? createReadStream(file, { highWaterMark: 1 << 20 }) : process.stdin;
  if (input === process.stdin && process.stdin.isTTY) throw new Error('requested load from stdin, but stdin is empty');
  const call = globals.client(ImagesService, 'image-service').import();
  const result = new Promise<Image[]>((resolve, reject) => {
    let images: Image[] = [];
    call.on('data', (r: { images: Image[] }) => (images = r.images));
    call.on('end', () => resolve(images));
    call.on('error', (e) => reject(fromGrpcError(e)));
  });
  call.write({ part: { $case: 'header', value: { rootfsRef, path: '', labels: {} } } });
  try {
    for await (const chunk of input) {
      if (!call.write({ part: { $case: 'chunk', value: chunk as Buffer } }))
        await new Promise((r) => call.once('drain', r));
    }
  } catch (e) {
    call.cancel();
    await result.catch(() => undefined);
    throw new Error(
      `cannot read ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (e as Error).message}`,
    );
  }
  call.end();
  return result;
}

export const command: Command = {
  name: 'load',
  usage: 'ctrctl load [OPTIONS]',
  summary: 'Load an image from a tar archive or STDIN',
  flags: [
    {
      name: 'input',
      short: 'i',
      type: 'string',
      value: 'string',
      help: 'Read from tar archive file, instead of STDIN',
    },
    quietFlag,
  ],
  maxArgs: 0,
  examples: ['ctrctl load -i busybox.tar', 'ctrctl load < busybox.tar.gz'],
  async run({ flags, globals, out }) {
    const images = await sendTarball(globals, flags.input as string | undefined);
    for (const i of images) {
      if (i.name.startsWith('<none>')) out.write(`Loaded image ID: ${i.id}\n`);
      else out.write(`Loaded image: ${repoAndTag(i.name).familiar}\n`);
    }
  },
};
