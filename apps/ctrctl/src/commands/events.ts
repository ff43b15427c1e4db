import { ContainersService } from '@ctr/api/containers/v1/containers';
import { EventsService } from '@ctr/api/supervisor/v1/supervisor';
import { readStream } from '@ctr/common/grpc-client';
import { UsageError } from '../errors.js';
import { type Command, formatFlag } from '../command.js';
import { ContainerAttributes, eventFilter, formatDockerEvent, parseTime, toDockerEvent } from '../docker-events.js';
import { renderTemplate, toJson } from '../format.js';

export const command: Command = {
  name: 'events',
  usage: 'ctrctl events [OPTIONS]',
  summary: 'Get real time events from the engine',
  flags: [
    {
      name: 'filter',
      short: 'f',
      type: 'list',
      value: 'filter',
      help: 'Filter output based on conditions provided (type=, event=, container=, image=, network=, volume=, service=)',
    },
    {
      name: 'since',
      type: 'string',
      value: 'string',
      help: 'Show all events created since timestamp (RFC 3339, unix seconds, or a duration like 10m)',
    },
    { name: 'until', type: 'string', value: 'string', help: 'Stream events until this timestamp' },
    formatFlag,
  ],
  maxArgs: 0,
  examples: [
    'ctrctl events',
    'ctrctl events --since 10m --filter type=container --format json',
    'ctrctl events --filter event=die',
  ],
  async run({ flags, globals, out }) {
    let since: Date | undefined;
    let until: Date | undefined;
    let matches: ReturnType<typeof eventFilter>;
    try {
      since = flags.since ? parseTime(flags.since as string) : undefined;
      until = flags.until ? parseTime(flags.until as string) : undefined;
      matches = eventFilter(flags.filter as string[]);
    } catch (err) {
      throw new UsageError((err as Error).message, 'events');
    }
    const format = flags.format as string | undefined;
    const stream = globals.client(EventsService, 'ctrd').subscribe({ topics: [], since, until });
    process.once('SIGINT', () => {
      stream.cancel();
      process.exit(0);
    });
    const containers = globals.client(ContainersService, 'container-service');
    const attrs = new ContainerAttributes(async (id) => {
      const c = await containers.get({ ref: id, size: false }, { timeoutMs: 2000 });
      return { name: c.name, image: c.image };
    });
    for await (const { envelope } of readStream(stream)) {
      if (!envelope) continue;
      const e = await attrs.enrich(toDockerEvent(envelope));
      if (!matches(e)) continue;
      out.write(`${format === 'json' ? toJson(e) : format ? renderTemplate(format, e) : formatDockerEvent(e)}\n`);
    }
  },
};
