import { ContainersService } from '@ctr/api/containers/v1/containers';
import type { Command } from '../command.js';
import { bytesSize } from '../format.js';

export const command: Command = {
  name: 'container prune',
  usage: 'ctrctl container prune [OPTIONS]',
  summary: 'Remove all stopped containers',
  flags: [
    { name: 'force', short: 'f', type: 'bool', help: 'Do not prompt for confirmation' },
    { name: 'filter', type: 'list', value: 'filter', help: 'Provide filter values' },
  ],
  maxArgs: 0,
  async run({ flags, globals, out }) {
    const r = await globals.client(ContainersService, 'container-service').prune({ filters: flags.filter as string[] });
    if (r.deleted.length) out.write(`Deleted Containers:\n${r.deleted.join('\n')}\n\n`);
    out.write(`Total reclaimed space: ${bytesSize(Number(r.spaceReclaimed))}\n`);
  },
};
