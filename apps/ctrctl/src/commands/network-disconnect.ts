import { NetworksService } from '@ctr/api/networks/v1/networks';
import type { Command } from '../command.js';
import { containerId } from './network-connect.js';

export const command: Command = {
  name: 'network disconnect',
  usage: 'ctrctl network disconnect [OPTIONS] NETWORK CONTAINER',
  summary: 'Disconnect a container from a network',
  flags: [{ name: 'force', short: 'f', type: 'bool', help: 'Force the container to disconnect from a network' }],
  minArgs: 2,
  maxArgs: 2,
  examples: ['ctrctl network disconnect app web'],
  async run({ args, globals }) {
    const api = globals.client(NetworksService, 'network-service');
    const id = await containerId(globals, args[1]);
    const network = await api.get({ ref: args[0] });
    if (!network.endpoints.some((e) => e.containerId === id)) {
      throw new Error(`container ${id} is not connected to network ${network.name}`);
    }
    await api.detach({ containerId: id, network: network.id });
  },
};
