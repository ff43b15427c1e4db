import { ImagesService } from '@ctr/api/images/v1/images';
import { parseReference } from '@ctr/common/reference';
import { type Command, quietFlag } from '../command.js';
import { followTransfer } from '../image-common.js';
import { ProgressView } from '../progress.js';

export const command: Command = {
  name: 'push',
  usage: 'ctrctl push [OPTIONS] NAME[:TAG]',
  summary: 'Upload an image to a registry',
  flags: [quietFlag],
  minArgs: 1,
  maxArgs: 1,
  examples: ['ctrctl push 127.0.0.1:5000/app:1'],
  async run({ flags, args, globals, out, err }) {
    const ref = parseReference(args[0]);
    const api = globals.client(ImagesService, 'image-service');
    const tty = Boolean(err.isTTY) && !flags.quiet;
    const view = flags.quiet ? undefined : new ProgressView(tty ? err : out, tty, 'push');
    view?.note(`The push refers to repository [${ref.domain}/${ref.path}]`);
    const { digest, size } = await followTransfer(api.push({ ref: args[0] }), view);
    if (flags.quiet) out.write(`${args[0]}\n`);
    else out.write(`${ref.tag ?? 'latest'}: digest: ${digest} size: ${size}\n`);
  },
};
