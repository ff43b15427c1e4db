import { VolumesService } from '@ctr/api/containers/v1/containers';
import { type Command, formatFlag } from '../command.js';
import { ExitCode } from '../errors.js';
import { printOne } from '../format.js';

export const command: Command = {
  name: 'volume inspect',
  usage: 'ctrctl volume inspect [OPTIONS] VOLUME [VOLUME...]',
  summary: 'Display detailed information on one or more volumes',
  flags: [{ ...formatFlag, short: 'f' }],
  minArgs: 1,
  async run({ flags, args, globals, out, err }) {
    const api = globals.client(VolumesService, 'container-service');
    const results: unknown[] = [];
    let failed = false;
    for (const name of args) {
      try {
        const v = await api.get({ name });
        results.push({
          CreatedAt: v.createdAt?.toISOString(),
          Driver: v.driver,
          Labels: v.labels,
          Mountpoint: v.mountpoint,
          Name: v.name,
          Options: v.options,
          Scope: 'local',
        });
      } catch (e) {
        failed = true;
        err.write(`Error: ${(e as Error).message}\n`);
      }
    }
    const format = flags.format as string | undefined;
    if (format) for (const r of results) printOne(out, format, r);
    else out.write(`${JSON.stringify(results, null, 4)}\n`);
    if (failed) throw new ExitCode(1);
  },
};
