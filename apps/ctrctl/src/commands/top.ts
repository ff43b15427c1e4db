import { TasksService } from '@ctr/api/containers/v1/containers';
import type { Command } from '../command.js';
import { table } from '../format.js';

export const command: Command = {
  name: 'top',
  usage: 'ctrctl top CONTAINER [ps OPTIONS]',
  summary: 'Display the running processes of a container',
  flags: [],
  minArgs: 1,
  stopAtFirstPositional: true,
  async run({ args, globals, out }) {
    const r = await globals.client(TasksService, 'container-service').top({ ref: args[0], psArgs: args.slice(1) });
    out.write(
      `${table(
        r.titles,
        r.processes.map((p) => p.columns),
      )}\n`,
    );
  },
};
