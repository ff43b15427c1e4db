import { ImagesService } from '@ctr/api/images/v1/images';
import type { Command } from '../command.js';

export const command: Command = {
  name: 'tag',
  usage: 'ctrctl tag SOURCE_IMAGE[:TAG] TARGET_IMAGE[:TAG]',
  summary: 'Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE',
  flags: [],
  minArgs: 2,
  maxArgs: 2,
  examples: ['ctrctl tag busybox 127.0.0.1:5000/busybox:1'],
  async run({ args, globals }) {
    await globals.client(ImagesService, 'image-service').tag({ source: args[0], target: args[1] });
  },
};
