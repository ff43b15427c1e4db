import { VolumesService } from '@ctr/api/containers/v1/containers';
import type { Command } from '../command.js';
import { eachRef } from '../container-common.js';

export const command: Command = {
  name: 'volume rm',
  usage: 'ctrctl volume rm [OPTIONS] VOLUME [VOLUME...]',
  summary: 'Remove one or more volumes',
  flags: [{ name: 'force', short: 'f', type: 'bool', help: 'Force the removal of one or more volumes' }],
  minArgs: 1,
  async run({ flags, args, globals, out, err }) {
    const api = globals.client(VolumesService, 'container-service');
    return eachRef(args, err, async (name) => {
      await api.remove({ name, force: Boolean(flags.force) });
      out.write(`${name}\n`);
    });
  },
};
