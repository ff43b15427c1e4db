import { ImagesService } from '@ctr/api/images/v1/images';
import type { Command } from '../command.js';

export const command: Command = {
  name: 'logout',
  usage: 'ctrctl logout [SERVER]',
  summary: 'Log out from a registry',
  flags: [],
  maxArgs: 1,
  examples: ['ctrctl logout 127.0.0.1:5000'],
  async run({ args, globals, out }) {
    const server = args[0] ?? 'docker.io';
    await globals.client(ImagesService, 'image-service').logout({ registry: server });
    out.write(`Removing login credentials for ${server}\n`);
  },
};
