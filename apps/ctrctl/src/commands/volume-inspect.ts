import { VolumesService } from '@ctr/api/containers/v1/containers';
import { type Command, formatFlag } from '../command.js';
import { printInspect } from '../format.js';

export const command: Command = {
  name: 'volume inspect',
  usage: 'ctrctl volume inspect [OPTIONS] VOLUME [VOLUME...]',
  summary: 'Display detailed information on one or more volumes',
  flags: [{ ...formatFlag, short: 'f' }],
  minArgs: 1,
  async run({ flags, args, globals, out, err }) {
    const api = globals.client(VolumesService, 'container-service');
    return printInspect({ out, err }, flags.format as string | undefined, args, async (name) => {
      const v = await api.get({ name });
      return {
        CreatedAt: v.createdAt?.toISOString(),
        Driver: v.driver,
        Labels: v.labels,
        Mountpoint: v.mountpoint,
        Name: v.name,
        Options: v.options,
        Scope: 'local',
      };
    });
  },
};
