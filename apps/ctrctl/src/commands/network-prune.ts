import { NetworksService } from '@ctr/api/networks/v1/networks';
import type { Command } from '../command.js';
import { confirm } from './image-prune.js';

export const command: Command = {
  name: 'network prune',
  usage: 'ctrctl network prune [OPTIONS]',
  summary: 'Remove all unused networks',
  flags: [
    { name: 'force', short: 'f', type: 'bool', help: 'Do not prompt for confirmation' },
    { name: 'filter', type: 'list', value: 'filter', help: 'Provide filter values (e.g. "label=<key>=<value>")' },
  ],
  maxArgs: 0,
  examples: ['ctrctl network prune -f'],
  async run({ flags, globals, out }) {
    if (!flags.force) {
      const q =
        'WARNING! This will remove all custom networks not used by at least one container.\nAre you sure you want to continue? [y/N] ';
      if (!(await confirm(q))) return;
    }
    const { removed } = await globals
      .client(NetworksService, 'network-service')
      .prune({ filters: flags.filter as string[] });
    if (removed.length) out.write(`Deleted Networks:\n${removed.join('\n')}\n\n`);
  },
};
