import { ContainersService } from '@ctr/api/containers/v1/containers';
import type { Command } from '../command.js';

export const command: Command = {
  name: 'commit',
  usage: 'ctrctl commit [OPTIONS] CONTAINER [REPOSITORY[:TAG]]',
  summary: "Create a new image from a container's changes",
  flags: [
    {
      name: 'author',
      short: 'a',
      type: 'string',
      value: 'string',
      help: 'Author (e.g., "John Hannibal Smith <hannibal@a-team.com>")',
    },
    { name: 'change', short: 'c', type: 'list', help: 'Apply Dockerfile instruction to the created image' },
    { name: 'message', short: 'm', type: 'string', value: 'string', help: 'Commit message' },
    { name: 'pause', short: 'p', type: 'bool', help: 'Pause container during commit', default: true },
  ],
  minArgs: 1,
  maxArgs: 2,
  examples: ['ctrctl commit web mysite:v2', `ctrctl commit -c 'CMD ["httpd", "-f"]' -m "static site" web`],
  async run({ args, flags, globals, out }) {
    const { imageId } = await globals.client(ContainersService, 'container-service').commit(
      {
        ref: args[0],
        repository: args[1] ?? '',
        author: (flags.author as string | undefined) ?? '',
        comment: (flags.message as string | undefined) ?? '',
        pause: flags.pause !== false,
        changes: flags.change as string[],
      },
      { timeoutMs: 3600_000 },
    );
    out.write(`${imageId}\n`);
  },
};
