import { ContainersService, type TaskStats, TasksService } from '@ctr/api/containers/v1/containers';
import { fromGrpcError } from '@ctr/common/errors';
import { type Command, formatFlag } from '../command.js';
import { bytesSize, humanSize, printList, table } from '../format.js';

function row(prev: TaskStats | undefined, s: TaskStats) {
  const cpuDelta = prev ? Number(s.cpuUsageNanos - prev.cpuUsageNanos) : 0;
  const sysDelta = prev ? Number(s.systemCpuUsageNanos - prev.systemCpuUsageNanos) : 0;
  const cpu = sysDelta > 0 ? (cpuDelta / sysDelta) * s.onlineCpus * 100 : 0;
  const limit = Number(s.memoryLimit);
  const used = Number(s.memoryUsage) - Number(s.memoryCache);
  return {
    ID: s.containerId.slice(0, 12),
    Container: s.containerId.slice(0, 12),
    Name: s.name,
    CPUPerc: `${cpu.toFixed(2)}%`,
    MemUsage: `${bytesSize(used)} / ${bytesSize(limit)}`,
    MemPerc: `${limit ? ((used / limit) * 100).toFixed(2) : '0.00'}%`,
    NetIO: `${humanSize(Number(s.netRxBytes))} / ${humanSize(Number(s.netTxBytes))}`,
    BlockIO: `${humanSize(Number(s.blockReadBytes))} / ${humanSize(Number(s.blockWriteBytes))}`,
    PIDs: String(s.pidsCurrent),
  };
}

export const command: Command = {
  name: 'stats',
  usage: 'ctrctl stats [OPTIONS] [CONTAINER...]',
  summary: 'Display a live stream of container(s) resource usage statistics',
  flags: [
    { name: 'no-stream', type: 'bool', help: 'Disable streaming stats and only pull the first result' },
    { name: 'all', short: 'a', type: 'bool', help: 'Show all containers (default shows just running)' },
    formatFlag,
    { name: 'no-trunc', type: 'bool', help: "Don't truncate output" },
  ],
  async run({ flags, args, globals, out }) {
    const refs = args.length
      ? args
      : (
          await globals.client(ContainersService, 'container-service').list({ all: false, filters: [], size: false })
        ).containers.map((c) => c.id);
    const tasks = globals.client(TasksService, 'container-service');
    const latest = new Map<string, ReturnType<typeof row>>();
    const prev = new Map<string, TaskStats>();
    const print = () => {
      const rows = refs.map((r) => latest.get(r)).filter((r) => r !== undefined);
      if (!flags['no-stream'] && out.isTTY) out.write('\x1b[2J\x1b[H');
      printList(out, flags.format as string | undefined, rows, () =>
        table(
          ['CONTAINER ID', 'NAME', 'CPU %', 'MEM USAGE / LIMIT', 'MEM %', 'NET I/O', 'BLOCK I/O', 'PIDS'],
          rows.map((r) => [r.ID, r.Name, r.CPUPerc, r.MemUsage, r.MemPerc, r.NetIO, r.BlockIO, r.PIDs]),
        ),
      );
    };
    await Promise.all(
      refs.map(
        (ref) =>
          new Promise<void>((resolve, reject) => {
            const stream = tasks.stats({ ref, stream: true }, { timeoutMs: 365 * 86400_000 });
            let n = 0;
            stream.on('data', (s: TaskStats) => {
              latest.set(ref, row(prev.get(ref), s));
              prev.set(ref, s);
              n++;
              // Without streaming, two samples a second apart give the CPU figure, as docker takes them.
              if (flags['no-stream'] && n >= 2) stream.cancel();
              else if (!flags['no-stream'] && n >= 2) print();
            });
            stream.on('end', resolve);
            stream.on('error', (e: { code?: number }) => (e.code === 1 ? resolve() : reject(fromGrpcError(e))));
          }),
      ),
    );
    if (flags['no-stream']) print();
  },
};
