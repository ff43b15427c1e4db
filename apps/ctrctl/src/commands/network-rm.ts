import { NetworksService } from '@ctr/api/networks/v1/networks';
import type { Command } from '../command.js';
import { ExitCode } from '../errors.js';

export const command: Command = {
  name: 'network rm',
  usage: 'ctrctl network rm NETWORK [NETWORK...]',
  summary: 'Remove one or more networks',
  flags: [{ name: 'force', short: 'f', type: 'bool', help: 'Do not error if the network does not exist' }],
  minArgs: 1,
  examples: ['ctrctl network rm app'],
  async run({ flags, args, globals, out, err }) {
    const api = globals.client(NetworksService, 'network-service');
    let failed = false;
    for (const ref of args) {
      try {
        await api.remove({ ref });
        out.write(`${ref}\n`);
      } catch (e) {
        if (flags.force && /not found/.test((e as Error).message)) continue;
        failed = true;
        err.write(`Error: ${(e as Error).message}\n`);
      }
    }
    if (failed) throw new ExitCode(1);
  },
};
