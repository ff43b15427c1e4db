import { TasksService } from '@ctr/api/containers/v1/containers';
import type { Command } from '../command.js';
import { attachStdio, eachRef, startFailureCode } from '../container-common.js';
import { ExitCode, UsageError } from '../errors.js';

export const command: Command = {
  name: 'start',
  usage: 'ctrctl start [OPTIONS] CONTAINER [CONTAINER...]',
  summary: 'Start one or more stopped containers',
  flags: [
    { name: 'attach', short: 'a', type: 'bool', help: 'Attach STDOUT/STDERR and forward signals' },
    { name: 'interactive', short: 'i', type: 'bool', help: "Attach container's STDIN" },
    { name: 'detach-keys', type: 'string', help: 'Override the key sequence for detaching a container' },
  ],
  minArgs: 1,
  examples: ['ctrctl start web', 'ctrctl start -a job'],
  async run(ctx) {
    const { flags, args, globals, out, err } = ctx;
    const tasks = globals.client(TasksService, 'container-service');
    if (flags.attach || flags.interactive) {
      if (args.length > 1) throw new UsageError('you cannot start and attach multiple containers at once');
      let r: { exitCode?: number };
      try {
        r = await attachStdio(
          tasks,
          {
            ref: args[0],
            start: true,
            stdin: Boolean(flags.interactive),
            tty: Boolean(process.stdin.isTTY && flags.interactive),
            detachKeys: flags['detach-keys'] as string | undefined,
          },
          ctx,
        );
      } catch (e) {
        err.write(`Error: ${(e as Error).message}\n`);
        throw new ExitCode(startFailureCode((e as Error).message) === 125 ? 1 : startFailureCode((e as Error).message));
      }
      return r.exitCode ?? 0;
    }
    return eachRef(args, err, async (ref) => {
      await tasks.start({ ref });
      out.write(`${ref}\n`);
    });
  },
};
