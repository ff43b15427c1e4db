/** The flags every daemon (and the shim) takes, and where their event bus is: nothing heavy to load. */
import { readFile } from 'node:fs/promises';
import { parseArgs } from 'node:util';
import { type Config, type ConfigFlags, layout } from './config.js';

/** Flags every daemon takes (ctrd passes them to the services it starts). */
export const DAEMON_FLAGS = {
  config: { type: 'string' },
  root: { type: 'string' },
  state: { type: 'string' },
  instance: { type: 'string' },
  'events-url': { type: 'string' },
  'log-level': { type: 'string' },
} as const;

export function parseDaemonFlags(argv: string[]): ConfigFlags {
  const { values } = parseArgs({ args: argv, options: DAEMON_FLAGS, strict: true });
  return {
    config: values.config,
    root: values.root,
    state: values.state,
    instance: values.instance,
    eventsUrl: values['events-url'],
    logLevel: values['log-level'],
  };
}

/** The NATS URL: configured, or the embedded server ctrd recorded in the state dir. */
export async function resolveEventsUrl(config: Config): Promise<string> {
  if (config.events.url) return config.events.url;
  const record = JSON.parse(await readFile(layout(config).natsRecord, 'utf8')) as { url: string };
  return record.url;
}
