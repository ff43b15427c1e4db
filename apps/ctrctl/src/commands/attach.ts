import { ContainersService, TasksService } from '@ctr/api/containers/v1/containers';
import type { Command } from '../command.js';
import { attachStdio } from '../container-common.js';

export const command: Command = {
  name: 'attach',
  usage: 'ctrctl attach [OPTIONS] CONTAINER',
  summary: 'Attach local standard input, output, and error streams to a running container',
  flags: [
    { name: 'no-stdin', type: 'bool', help: 'Do not attach STDIN' },
    {
      name: 'detach-keys',
      type: 'string',
      value: 'string',
      help: 'Override the key sequence for detaching a container',
    },
    { name: 'sig-proxy', type: 'bool', help: 'Proxy all received signals to the process', default: true },
  ],
  minArgs: 1,
  maxArgs: 1,
  async run(ctx) {
    const { flags, args, globals } = ctx;
    const c = await globals.client(ContainersService, 'container-service').get({ ref: args[0], size: false });
    const r = await attachStdio(
      globals.client(TasksService, 'container-service'),
      {
        ref: c.id,
        start: false,
        stdin: !flags['no-stdin'] && Boolean(c.config?.openStdin),
        tty: Boolean(c.config?.tty),
        detachKeys: flags['detach-keys'] as string | undefined,
      },
      ctx,
    );
    return r.exitCode ?? 0;
  },
};
