import { NetworksService } from '@ctr/api/networks/v1/networks';
import type { Command } from '../command.js';
import type { Globals } from '../engine.js';

/** The container's id among the network-service's sandboxes: full id, name, or unique id prefix. */
export async function containerId(globals: Globals, ref: string): Promise<string> {
  const { sandboxes } = await globals.client(NetworksService, 'network-service').listSandboxes({});
  const exact = sandboxes.find((s) => s.containerId === ref || s.containerName === ref);
  if (exact) return exact.containerId;
  const byPrefix = sandboxes.filter((s) => s.containerId.startsWith(ref));
  if (byPrefix.length === 1) return byPrefix[0].containerId;
  throw new Error(`No such container: ${ref}`);
}

export const command: Command = {
  name: 'network connect',
  usage: 'ctrctl network connect [OPTIONS] NETWORK CONTAINER',
  summary: 'Connect a container to a network',
  flags: [
    { name: 'ip', type: 'string', value: 'string', help: 'IPv4 address (e.g., "100.64.10.5")' },
    { name: 'alias', type: 'list', value: 'strings', help: 'Add network-scoped alias for the container' },
  ],
  minArgs: 2,
  maxArgs: 2,
  examples: ['ctrctl network connect app web', 'ctrctl network connect --ip 100.64.10.5 --alias db app web'],
  async run({ flags, args, globals }) {
    const id = await containerId(globals, args[1]);
    await globals.client(NetworksService, 'network-service').attach({
      containerId: id,
      network: args[0],
      containerName: '',
      aliases: flags.alias as string[],
      ipv4Address: (flags.ip as string | undefined) ?? '',
      ports: [],
      macAddress: '',
      interfaceName: '',
    });
  },
};
