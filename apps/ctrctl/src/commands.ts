/** Every ctrctl command, loaded only when used so that the CLI starts fast. */
import type { Command } from './command.js';

type Loader = () => Promise<{ command: Command }>;

export const COMMANDS: Record<string, { summary: string; load: Loader }> = {
  version: { summary: 'Show the ctr version information', load: () => import('./commands/version.js') },
  info: { summary: 'Display system-wide information', load: () => import('./commands/info.js') },
  events: { summary: 'Get real time events from the engine', load: () => import('./commands/events.js') },
  'system info': { summary: 'Display system-wide information', load: () => import('./commands/info.js') },
  'system events': { summary: 'Get real time events from the engine', load: () => import('./commands/events.js') },
  'system services': {
    summary: "List the engine's daemons: state, pid, uptime, restarts",
    load: () => import('./commands/system-services.js'),
  },
};

/** Groups: `ctrctl system ...`. */
export const GROUPS: Record<string, string> = {
  system: 'Manage the engine',
};
