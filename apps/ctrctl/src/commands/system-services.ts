import { ServiceState, SupervisorService } from '@ctr/api/supervisor/v1/supervisor';
import { type Command, formatFlag, quietFlag } from '../command.js';
import { humanDuration, printList, table } from '../format.js';

export function stateName(state: ServiceState): string {
  const name = ServiceState[state] ?? 'SERVICE_STATE_UNSPECIFIED';
  return name.replace('SERVICE_STATE_', '').toLowerCase().replace('unspecified', 'unknown');
}

export const command: Command = {
  name: 'system services',
  usage: 'ctrctl system services [OPTIONS]',
  summary: "List the engine's daemons: state, pid, uptime, restarts",
  flags: [formatFlag, quietFlag],
  maxArgs: 0,
  examples: ['ctrctl system services', 'ctrctl system services --format json'],
  async run({ flags, globals, out }) {
    const { services } = await globals.client(SupervisorService, 'ctrd').listServices({}, { timeoutMs: 5000 });
    if (flags.quiet) {
      for (const s of services) out.write(`${s.name}\n`);
      return;
    }
    const items = services.map((s) => ({
      name: s.name,
      pid: s.pid,
      state: stateName(s.state),
      restarts: s.restarts,
      startedAt: s.startedAt?.toISOString() ?? '',
      version: s.version,
    }));
    printList(out, flags.format as string | undefined, items, () =>
      table(
        ['NAME', 'PID', 'STATE', 'UPTIME', 'RESTARTS', 'VERSION'],
        services.map((s) => [
          s.name,
          String(s.pid),
          stateName(s.state) + (s.message && s.state !== ServiceState.SERVICE_STATE_HEALTHY ? ` (${s.message})` : ''),
          s.startedAt && s.state !== ServiceState.SERVICE_STATE_STOPPED
            ? `Up ${humanDuration(Date.now() - s.startedAt.getTime())}`
            : '-',
          String(s.restarts),
          s.version || '-',
        ]),
      ),
    );
  },
};
