import { ContainersService, type LogEntry, TasksService } from '@ctr/api/containers/v1/containers';
import { fromGrpcError } from '@ctr/common/errors';
import type { Command } from '../command.js';
import { parseTime } from '../docker-events.js';
import { UsageError } from '../errors.js';

export const command: Command = {
  name: 'logs',
  usage: 'ctrctl logs [OPTIONS] CONTAINER',
  summary: 'Fetch the logs of a container',
  flags: [
    { name: 'follow', short: 'f', type: 'bool', help: 'Follow log output' },
    {
      name: 'tail',
      short: 'n',
      type: 'string',
      value: 'string',
      help: 'Number of lines to show from the end of the logs',
      default: 'all',
    },
    {
      name: 'since',
      type: 'string',
      value: 'string',
      help: 'Show logs since timestamp (e.g. "2013-01-02T13:23:37Z") or relative (e.g. "42m")',
    },
    { name: 'until', type: 'string', value: 'string', help: 'Show logs before a timestamp or relative' },
    { name: 'timestamps', short: 't', type: 'bool', help: 'Show timestamps' },
    { name: 'details', type: 'bool', help: 'Show extra details provided to logs' },
  ],
  minArgs: 1,
  maxArgs: 1,
  examples: ['ctrctl logs -f web', 'ctrctl logs --tail 10 -t web'],
  async run({ flags, args, globals, out, err }) {
    const tailFlag = flags.tail as string;
    if (tailFlag !== 'all' && !/^-?\d+$/.test(tailFlag))
      throw new UsageError(`invalid argument "${tailFlag}" for "-n, --tail" flag: expected a number or "all"`);
    const tail = tailFlag === 'all' || Number(tailFlag) < 0 ? -1n : BigInt(tailFlag);
    let since: Date | undefined;
    let until: Date | undefined;
    try {
      since = flags.since ? parseTime(flags.since as string) : undefined;
      until = flags.until ? parseTime(flags.until as string) : undefined;
    } catch (e) {
      throw new UsageError((e as Error).message);
    }
    // A missing container is one clear line, before any stream opens.
    const c = await globals.client(ContainersService, 'container-service').get({ ref: args[0], size: false });
    const tty = Boolean(c.config?.tty);
    const stream = globals
      .client(TasksService, 'container-service')
      .logs(
        { ref: c.id, follow: Boolean(flags.follow), tail, since, until, stdout: true, stderr: true },
        { timeoutMs: 365 * 86400_000 },
      );
    process.on('SIGINT', () => stream.cancel());
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (e: LogEntry) => {
        const target = e.stream === 'stderr' && !tty ? err : out;
        if (flags.timestamps) target.write(`${e.time?.toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z')} `);
        target.write(e.line);
      });
      stream.on('end', resolve);
      stream.on('error', (e: { code?: number }) => (e.code === 1 ? resolve() : reject(fromGrpcError(e))));
    });
  },
};
