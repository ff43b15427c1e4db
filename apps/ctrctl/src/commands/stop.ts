import { TasksService } from '@ctr/api/containers/v1/containers';
import type { Command } from '../command.js';
import { eachRef } from '../container-common.js';

export const command: Command = {
  name: 'stop',
  usage: 'ctrctl stop [OPTIONS] CONTAINER [CONTAINER...]',
  summary: 'Stop one or more running containers',
  flags: [
    { name: 'time', short: 't', type: 'int', value: 'int', help: 'Seconds to wait before killing the container' },
    { name: 'signal', short: 's', type: 'string', value: 'string', help: 'Signal to send to the container' },
  ],
  minArgs: 1,
  examples: ['ctrctl stop web', 'ctrctl stop -t 0 web'],
  async run({ flags, args, globals, out, err }) {
    const tasks = globals.client(TasksService, 'container-service');
    const timeout = flags.time as number | undefined;
    return eachRef(args, err, async (ref) => {
      await tasks.stop(
        { ref, timeout, signal: (flags.signal as string | undefined) ?? '' },
        { timeoutMs: 24 * 3600_000 },
      );
      out.write(`${ref}\n`);
    });
  },
};
