import { NetworksService } from '@ctr/api/networks/v1/networks';
import { type Command, formatFlag } from '../command.js';
import { printInspect } from '../format.js';
import { inspectNetwork } from './network-common.js';

export const command: Command = {
  name: 'network inspect',
  usage: 'ctrctl network inspect [OPTIONS] NETWORK [NETWORK...]',
  summary: 'Display detailed information on one or more networks',
  flags: [{ ...formatFlag, short: 'f' }],
  minArgs: 1,
  examples: ['ctrctl network inspect bridge', "ctrctl network inspect -f '{{.IPAM.Config}}' app"],
  async run({ flags, args, globals, out, err }) {
    const api = globals.client(NetworksService, 'network-service');
    return printInspect({ out, err }, flags.format as string | undefined, args, async (ref) =>
      inspectNetwork(await api.get({ ref })),
    );
  },
};
