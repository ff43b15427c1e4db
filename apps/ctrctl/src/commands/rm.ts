import { ContainersService } from '@ctr/api/containers/v1/containers';
import type { Command } from '../command.js';
import { eachRef } from '../container-common.js';

export const command: Command = {
  name: 'rm',
  usage: 'ctrctl rm [OPTIONS] CONTAINER [CONTAINER...]',
  summary: 'Remove one or more containers',
  flags: [
    { name: 'force', short: 'f', type: 'bool', help: 'Force the removal of a running container (uses SIGKILL)' },
    { name: 'volumes', short: 'v', type: 'bool', help: 'Remove anonymous volumes associated with the container' },
  ],
  minArgs: 1,
  examples: ['ctrctl rm web', 'ctrctl rm -f -v web'],
  async run({ flags, args, globals, out, err }) {
    const api = globals.client(ContainersService, 'container-service');
    return eachRef(args, err, async (ref) => {
      await api.delete({ ref, force: Boolean(flags.force), removeVolumes: Boolean(flags.volumes) });
      out.write(`${ref}\n`);
    });
  },
};
