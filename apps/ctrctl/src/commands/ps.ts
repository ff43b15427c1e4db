import { ContainersService } from '@ctr/api/containers/v1/containers';
import { type Command, formatFlag } from '../command.js';
import { psRow } from '../container-common.js';
import { printList, table } from '../format.js';

export const command: Command = {
  name: 'ps',
  usage: 'ctrctl ps [OPTIONS]',
  summary: 'List containers',
  flags: [
    { name: 'all', short: 'a', type: 'bool', help: 'Show all containers (default shows just running)' },
    { name: 'quiet', short: 'q', type: 'bool', help: 'Only display container IDs' },
    { name: 'filter', short: 'f', type: 'list', value: 'filter', help: 'Filter output based on conditions provided' },
    formatFlag,
    { name: 'no-trunc', type: 'bool', help: "Don't truncate output" },
    {
      name: 'last',
      short: 'n',
      type: 'int',
      value: 'int',
      help: 'Show n last created containers (includes all states)',
    },
    { name: 'latest', short: 'l', type: 'bool', help: 'Show the latest created container (includes all states)' },
    { name: 'size', short: 's', type: 'bool', help: 'Display total file sizes' },
  ],
  maxArgs: 0,
  examples: ['ctrctl ps -a', "ctrctl ps --filter status=exited --format '{{.Names}}'"],
  async run({ flags, globals, out }) {
    const last = flags.latest ? 1 : ((flags.last as number | undefined) ?? -1);
    const { containers } = await globals.client(ContainersService, 'container-service').list({
      all: Boolean(flags.all) || last > 0,
      filters: flags.filter as string[],
      size: Boolean(flags.size),
    });
    const shown = last > 0 ? containers.slice(0, last) : containers;
    const rows = shown.map((c) => psRow(c, Boolean(flags['no-trunc'])));
    if (flags.quiet) {
      for (const r of rows) out.write(`${r.ID}\n`);
      return;
    }
    printList(out, flags.format as string | undefined, rows, () =>
      table(
        ['CONTAINER ID', 'IMAGE', 'COMMAND', 'CREATED', 'STATUS', 'PORTS', 'NAMES'],
        rows.map((r) => [r.ID, r.Image, r.Command, r.RunningFor, r.Status, r.Ports, r.Names]),
      ),
    );
  },
};
