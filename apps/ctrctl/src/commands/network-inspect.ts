import { NetworksService } from '@ctr/api/networks/v1/networks';
import { type Command, formatFlag } from '../command.js';
import { ExitCode } from '../errors.js';
import { printOne } from '../format.js';
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
    const results: unknown[] = [];
    let failed = false;
    for (const ref of args) {
      try {
        results.push(inspectNetwork(await api.get({ ref })));
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
