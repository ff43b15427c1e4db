import type { Command } from '../command.js';
import { sendTarball } from './load.js';

export const command: Command = {
  name: 'import',
  usage: 'ctrctl import [OPTIONS] file|- REPOSITORY[:TAG]',
  summary: 'Import the contents from a tarball to create a filesystem image',
  flags: [],
  minArgs: 2,
  maxArgs: 2,
  examples: ['ctrctl import rootfs.tar myimage:1', 'cat rootfs.tar.gz | ctrctl import - myimage:1'],
  async run({ args, globals, out }) {
    const [image] = await sendTarball(globals, args[0], args[1]);
    out.write(`${image.id}\n`);
  },
};
