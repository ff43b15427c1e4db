import type { Command } from '../command.js';
import { CREATE_FLAGS } from '../run-flags.js';
import { createContainer } from './run.js';

export const command: Command = {
  name: 'create',
  usage: 'ctrctl create [OPTIONS] IMAGE [COMMAND] [ARG...]',
  summary: 'Create a new container',
  flags: CREATE_FLAGS,
  minArgs: 1,
  stopAtFirstPositional: true,
  examples: ['ctrctl create --name web -p 8080:80 busybox httpd -f'],
  async run(ctx) {
    ctx.out.write(`${await createContainer(ctx)}\n`);
  },
};
