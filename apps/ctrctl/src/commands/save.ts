import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { ImagesService } from '@ctr/api/images/v1/images';
import { readStream } from '@ctr/common/grpc-client';
import type { Command } from '../command.js';

export const command: Command = {
  name: 'save',
  usage: 'ctrctl save [OPTIONS] IMAGE [IMAGE...]',
  summary: 'Save one or more images to a tar archive (streamed to STDOUT by default)',
  flags: [{ name: 'output', short: 'o', type: 'string', value: 'string', help: 'Write to a file, instead of STDOUT' }],
  minArgs: 1,
  examples: ['ctrctl save -o busybox.tar busybox', 'ctrctl save busybox | gzip > busybox.tar.gz'],
  async run({ flags, args, globals, out }) {
    const file = flags.output as string | undefined;
    if (!file && out.isTTY) throw new Error('cowardly refusing to save to a terminal. Use the -o flag or redirect');
    const api = globals.client(ImagesService, 'image-service');
    // A file appears whole or not at all.
    const tmp = file ? `${file}.${process.pid}.tmp` : '';
    const sink = file ? createWriteStream(tmp) : out;
    try {
      for await (const chunk of readStream(api.export({ refs: args }))) {
        if (!sink.write(chunk.data)) await new Promise<void>((r) => sink.once('drain', () => r()));
      }
      if (file) {
        await new Promise<void>((resolve, reject) =>
          (sink as ReturnType<typeof createWriteStream>).end((e?: Error | null) => (e ? reject(e) : resolve())),
        );
        await rename(tmp, file);
      }
    } catch (err) {
      if (file) {
        (sink as ReturnType<typeof createWriteStream>).destroy();
        await rm(tmp, { force: true });
      }
      throw err;
    }
  },
};
