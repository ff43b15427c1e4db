import { VolumesService } from '@ctr/api/containers/v1/containers';
import type { Command } from '../command.js';
import { UsageError } from '../errors.js';

export const command: Command = {
  name: 'volume create',
  usage: 'ctrctl volume create [OPTIONS] [VOLUME]',
  summary: 'Create a volume',
  flags: [
    {
      name: 'driver',
      short: 'd',
      type: 'string',
      value: 'string',
      help: 'Specify volume driver name',
      default: 'local',
    },
    { name: 'label', type: 'list', value: 'list', help: 'Set metadata for a volume' },
    { name: 'opt', short: 'o', type: 'list', value: 'map', help: 'Set driver specific options' },
    { name: 'name', type: 'string', value: 'string', help: 'Specify volume name', hidden: true },
  ],
  maxArgs: 1,
  async run({ flags, args, globals, out }) {
    const kv = (values: string[]) =>
      Object.fromEntries(
        values.map((v) => {
          const i = v.indexOf('=');
          return i < 0 ? [v, ''] : [v.slice(0, i), v.slice(i + 1)];
        }),
      );
    const name = args[0] ?? (flags.name as string | undefined) ?? '';
    if (args[0] && flags.name && flags.name !== args[0])
      throw new UsageError(`conflicting options: either specify --name or provide positional arg, not both`);
    const v = await globals.client(VolumesService, 'container-service').create({
      name,
      driver: flags.driver as string,
      labels: kv(flags.label as string[]),
      options: kv(flags.opt as string[]),
    });
    out.write(`${v.name}\n`);
  },
};
