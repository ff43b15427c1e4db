import { NetworksService } from '@ctr/api/networks/v1/networks';
import type { Command } from '../command.js';
import { UsageError } from '../errors.js';
import { pairs } from './network-common.js';

export const command: Command = {
  name: 'network create',
  usage: 'ctrctl network create [OPTIONS] NETWORK',
  summary: 'Create a network',
  flags: [
    {
      name: 'driver',
      short: 'd',
      type: 'string',
      value: 'string',
      help: 'Driver to manage the Network (default "bridge")',
    },
    {
      name: 'subnet',
      type: 'string',
      value: 'string',
      help: 'Subnet in CIDR format that represents a network segment',
    },
    { name: 'gateway', type: 'string', value: 'string', help: 'IPv4 Gateway for the master subnet' },
    { name: 'ip-range', type: 'string', value: 'string', help: 'Allocate container ip from a sub-range' },
    { name: 'internal', type: 'bool', help: 'Restrict external access to the network' },
    { name: 'attachable', type: 'bool', help: 'Accepted for compatibility: every network is attachable' },
    { name: 'ipv6', type: 'bool', help: 'Enable IPv6 networking (not supported)' },
    { name: 'label', type: 'list', value: 'list', help: 'Set metadata on a network' },
    { name: 'opt', short: 'o', type: 'list', value: 'map', help: 'Set driver specific options' },
  ],
  minArgs: 1,
  maxArgs: 1,
  examples: ['ctrctl network create app', 'ctrctl network create --subnet 100.64.10.0/24 --gateway 100.64.10.254 app'],
  async run({ flags, args, globals, out }) {
    if (flags.ipv6) throw new UsageError('IPv6 networks are not supported', 'network create');
    if (!flags.subnet && (flags.gateway || flags['ip-range'])) {
      throw new UsageError('--gateway and --ip-range need --subnet', 'network create');
    }
    const n = await globals.client(NetworksService, 'network-service').create({
      name: args[0],
      driver: (flags.driver as string | undefined) ?? 'bridge',
      ipam: flags.subnet
        ? [
            {
              subnet: flags.subnet as string,
              gateway: (flags.gateway as string | undefined) ?? '',
              ipRange: (flags['ip-range'] as string | undefined) ?? '',
            },
          ]
        : [],
      labels: pairs(flags.label as string[], '--label'),
      options: pairs(flags.opt as string[], '--opt'),
      internal: Boolean(flags.internal),
    });
    out.write(`${n.id}\n`);
  },
};
