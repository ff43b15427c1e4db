import { ContainersService } from '@ctr/api/containers/v1/containers';
import type { Command } from '../command.js';
import { ExitCode } from '../errors.js';

export const command: Command = {
  name: 'port',
  usage: 'ctrctl port CONTAINER [PRIVATE_PORT[/PROTO]]',
  summary: 'List port mappings or a specific mapping for the container',
  flags: [],
  minArgs: 1,
  maxArgs: 2,
  async run({ args, globals, out, err }) {
    const c = await globals.client(ContainersService, 'container-service').get({ ref: args[0], size: false });
    let ports = c.ports;
    if (args[1]) {
      const [port, proto = 'tcp'] = args[1].split('/');
      ports = ports.filter((p) => p.containerPort === Number(port) && p.protocol === proto);
      if (!ports.length) {
        err.write(`Error: No public port '${port}/${proto}' published for ${args[0]}\n`);
        throw new ExitCode(1);
      }
      for (const p of ports) out.write(`${p.hostIp || '0.0.0.0'}:${p.hostPort}\n`);
      return;
    }
    for (const p of ports) out.write(`${p.containerPort}/${p.protocol} -> ${p.hostIp || '0.0.0.0'}:${p.hostPort}\n`);
  },
};
