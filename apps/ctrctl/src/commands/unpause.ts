import { TasksService } from '@ctr/api/containers/v1/containers';
import type { Command } from '../command.js';
import { eachRef } from '../container-common.js';

export const command: Command = {
  name: 'unpause',
  usage: 'ctrctl unpause CONTAINER [CONTAINER...]',
  summary: 'Unpause all processes within one or more containers',
  flags: [],
  minArgs: 1,
  async run({ args, globals, out, err }) {
    const tasks = globals.client(TasksService, 'container-service');
    return eachRef(args, err, async (ref) => {
      await tasks.resume({ ref });
      out.write(`${ref}\n`);
    });
  },
};
