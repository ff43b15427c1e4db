import { readFileSync } from 'node:fs';
import { TasksService } from '@ctr/api/containers/v1/containers';
import type { Command } from '../command.js';
import { attachStdio, startFailureCode } from '../container-common.js';
import { ExitCode, UsageError } from '../errors.js';

export const command: Command = {
  name: 'exec',
  usage: 'ctrctl exec [OPTIONS] CONTAINER COMMAND [ARG...]',
  summary: 'Execute a command in a running container',
  flags: [
    { name: 'detach', short: 'd', type: 'bool', help: 'Detached mode: run command in the background' },
    { name: 'interactive', short: 'i', type: 'bool', help: 'Keep STDIN open even if not attached' },
    { name: 'tty', short: 't', type: 'bool', help: 'Allocate a pseudo-TTY' },
    { name: 'env', short: 'e', type: 'list', value: 'list', help: 'Set environment variables' },
    { name: 'env-file', type: 'list', value: 'list', help: 'Read in a file of environment variables' },
    {
      name: 'user',
      short: 'u',
      type: 'string',
      value: 'string',
      help: 'Username or UID (format: "<name|uid>[:<group|gid>]")',
    },
    { name: 'workdir', short: 'w', type: 'string', value: 'string', help: 'Working directory inside the container' },
    { name: 'privileged', type: 'bool', help: 'Give extended privileges to the command' },
    {
      name: 'detach-keys',
      type: 'string',
      value: 'string',
      help: 'Override the key sequence for detaching a container',
    },
  ],
  minArgs: 2,
  stopAtFirstPositional: true,
  examples: ['ctrctl exec web ls /', 'ctrctl exec -it web sh'],
  async run(ctx) {
    const { flags, args, globals, out, err } = ctx;
    const [ref, ...cmd] = args;
    const env = [
      ...(flags['env-file'] as string[]).flatMap((f) => {
        try {
          return readFileSync(f, 'utf8')
            .split('\n')
            .map((l) => l.trim())
            .filter((l) => l && !l.startsWith('#'));
        } catch (e) {
          throw new UsageError(`open ${f}: ${(e as Error).message}`);
        }
      }),
      ...(flags.env as string[]),
    ].flatMap((e) => (e.includes('=') ? [e] : process.env[e] === undefined ? [] : [`${e}=${process.env[e]}`]));
    const tasks = globals.client(TasksService, 'container-service');
    const tty = Boolean(flags.tty);
    const { execId } = await tasks.exec({
      ref,
      args: cmd,
      env,
      user: (flags.user as string | undefined) ?? '',
      workingDir: (flags.workdir as string | undefined) ?? '',
      tty,
      stdin: Boolean(flags.interactive),
      detach: Boolean(flags.detach),
      privileged: Boolean(flags.privileged),
      consoleWidth: out.columns ?? 0,
      consoleHeight: out.rows ?? 0,
    });
    if (flags.detach) return 0;
    let r: { exitCode?: number; error?: string };
    try {
      r = await attachStdio(
        tasks,
        {
          ref,
          execId,
          start: true,
          stdin: Boolean(flags.interactive),
          tty,
          detachKeys: flags['detach-keys'] as string | undefined,
        },
        ctx,
      );
    } catch (e) {
      err.write(`Error: ${(e as Error).message}\n`);
      throw new ExitCode(startFailureCode((e as Error).message));
    }
    return r.exitCode ?? 0;
  },
};
