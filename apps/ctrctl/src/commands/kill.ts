import { TasksService } from '@ctr/api/containers/v1/containers';
import type { Command } from '../command.js';
import { eachRef } from '../container-common.js';

export const command: Command = {
  name: 'kill',
  usage: 'ctrctl kill [OPTIONS] CONTAINER [CONTAINER...]',
  summary: 'Kill one or more running containers',
  flags: [
    {
      name: 'signal',
      short: 's',
      type: 'string',
      value: 'string',
      help: 'Signal to send to the container',
      default: 'KILL',
    },
  ],
  minArgs: 1,
  async run({ flags, args, globals, out, err }) {
    const tasks = globals.client(TasksService, 'container-service');
    return eachRef(args, err, async (ref) => {
      await tasks.kill({ ref, signal: flags.signal as string, execId: '', all: false });
      out.write(`${ref}\n`);
    });
  },
};
