import { NetworksService } from '@ctr/api/networks/v1/networks';
import { type Command, formatFlag } from '../command.js';
import { printList, table } from '../format.js';
import { networkRow } from './network-common.js';

export const command: Command = {
  name: 'network ls',
  usage: 'ctrctl network ls [OPTIONS]',
  summary: 'List networks',
  flags: [
    { name: 'quiet', short: 'q', type: 'bool', help: 'Only display network IDs' },
    formatFlag,
    { name: 'no-trunc', type: 'bool', help: 'Do not truncate the output' },
    { name: 'filter', short: 'f', type: 'list', value: 'filter', help: "Provide filter values (e.g. 'driver=bridge')" },
  ],
  maxArgs: 0,
  examples: ['ctrctl network ls', 'ctrctl network ls --filter driver=bridge --format json'],
  async run({ flags, globals, out }) {
    const { networks } = await globals
      .client(NetworksService, 'network-service')
      .list({ filters: flags.filter as string[] });
    const rows = networks
      .map((n) => networkRow(n, Boolean(flags['no-trunc'])))
      .sort((a, b) => a.Name.localeCompare(b.Name));
    if (flags.quiet) {
      for (const r of rows) out.write(`${r.ID}\n`);
      return;
    }
    printList(out, flags.format as string | undefined, rows, () =>
      table(
        ['NETWORK ID', 'NAME', 'DRIVER', 'SCOPE'],
        rows.map((r) => [r.ID, r.Name, r.Driver, r.Scope]),
      ),
    );
  },
};
