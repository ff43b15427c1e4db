import { TasksService } from '@ctr/api/containers/v1/containers';
import type { Command } from '../command.js';
import { eachRef } from '../container-common.js';

export const command: Command = {
  name: 'restart',
  usage: 'ctrctl restart [OPTIONS] CONTAINER [CONTAINER...]',
  summary: 'Restart one or more containers',
  flags: [
    { name: 'time', short: 't', type: 'int', value: 'int', help: 'Seconds to wait before killing the container' },
  ],
  minArgs: 1,
  async run({ flags, args, globals, out, err }) {
    const tasks = globals.client(TasksService, 'container-service');
    return eachRef(args, err, async (ref) => {
      await tasks.restart({ ref, timeout: flags.time as number | undefined }, { timeoutMs: 24 * 3600_000 });
      out.write(`${ref}\n`);
    });
  },
};
