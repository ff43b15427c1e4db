import { VolumesService } from '@ctr/api/containers/v1/containers';
import type { Command } from '../command.js';
import { bytesSize } from '../format.js';

export const command: Command = {
  name: 'volume prune',
  usage: 'ctrctl volume prune [OPTIONS]',
  summary: 'Remove unused local volumes',
  flags: [
    { name: 'all', short: 'a', type: 'bool', help: 'Remove all unused volumes, not just anonymous ones' },
    { name: 'force', short: 'f', type: 'bool', help: 'Do not prompt for confirmation' },
    { name: 'filter', type: 'list', value: 'filter', help: "Provide filter values (e.g. 'label=<label>')" },
  ],
  maxArgs: 0,
  async run({ flags, globals, out }) {
    const r = await globals
      .client(VolumesService, 'container-service')
      .prune({ filters: flags.filter as string[], all: Boolean(flags.all) });
    if (r.deleted.length) out.write(`Deleted Volumes:\n${r.deleted.join('\n')}\n\n`);
    out.write(`Total reclaimed space: ${bytesSize(Number(r.spaceReclaimed))}\n`);
  },
};
