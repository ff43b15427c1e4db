import { ContainersService } from '@ctr/api/containers/v1/containers';
import type { Command } from '../command.js';

export const command: Command = {
  name: 'rename',
  usage: 'ctrctl rename CONTAINER NEW_NAME',
  summary: 'Rename a container',
  flags: [],
  minArgs: 2,
  maxArgs: 2,
  async run({ args, globals }) {
    await globals.client(ContainersService, 'container-service').rename({ ref: args[0], name: args[1] });
  },
};
