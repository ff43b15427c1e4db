import { ImagesService } from '@ctr/api/images/v1/images';
import type { Command } from '../command.js';
import { ExitCode } from '../errors.js';

export const command: Command = {
  name: 'rmi',
  usage: 'ctrctl rmi [OPTIONS] IMAGE [IMAGE...]',
  summary: 'Remove one or more images',
  flags: [{ name: 'force', short: 'f', type: 'bool', help: 'Force removal of the image' }],
  minArgs: 1,
  examples: ['ctrctl rmi busybox', 'ctrctl rmi -f 3f57d9401f8d'],
  async run({ flags, args, globals, out, err }) {
    const api = globals.client(ImagesService, 'image-service');
    let failed = false;
    for (const ref of args) {
      try {
        const r = await api.delete({ ref, force: Boolean(flags.force) });
        for (const u of r.untagged) out.write(`Untagged: ${u}\n`);
        for (const d of r.deleted) out.write(`Deleted: ${d}\n`);
      } catch (e) {
        failed = true;
        err.write(`Error: ${(e as Error).message}\n`);
      }
    }
    if (failed) throw new ExitCode(1);
  },
};
