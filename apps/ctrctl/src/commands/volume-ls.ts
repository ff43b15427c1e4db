import { VolumesService } from '@ctr/api/containers/v1/containers';
import { type Command, formatFlag } from '../command.js';
import { printList, table } from '../format.js';

export const command: Command = {
  name: 'volume ls',
  usage: 'ctrctl volume ls [OPTIONS]',
  summary: 'List volumes',
  flags: [
    { name: 'quiet', short: 'q', type: 'bool', help: 'Only display volume names' },
    { name: 'filter', short: 'f', type: 'list', value: 'filter', help: "Provide filter values (e.g. 'dangling=true')" },
    formatFlag,
  ],
  maxArgs: 0,
  async run({ flags, globals, out }) {
    const { volumes } = await globals
      .client(VolumesService, 'container-service')
      .list({ filters: flags.filter as string[] });
    const rows = volumes.map((v) => ({
      Driver: v.driver,
      Labels: Object.entries(v.labels)
        .map(([k, x]) => `${k}=${x}`)
        .join(','),
      Links: 'N/A',
      Mountpoint: v.mountpoint,
      Name: v.name,
      Scope: 'local',
      Size: 'N/A',
    }));
    if (flags.quiet) {
      for (const r of rows) out.write(`${r.Name}\n`);
      return;
    }
    printList(out, flags.format as string | undefined, rows, () =>
      table(
        ['DRIVER', 'VOLUME NAME'],
        rows.map((r) => [r.Driver, r.Name]),
      ),
    );
  },
};
