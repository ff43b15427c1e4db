import { ServiceState, SupervisorService } from '@ctr/api/supervisor/v1/supervisor';
import { VERSION } from '@ctr/common/version';
import { type Command, formatFlag } from '../command.js';
import { bytesSize, printOne } from '../format.js';

export const command: Command = {
  name: 'info',
  usage: 'ctrctl info [OPTIONS]',
  summary: 'Display system-wide information',
  flags: [formatFlag],
  maxArgs: 0,
  examples: ['ctrctl info', "ctrctl info --format '{{.CgroupVersion}}'"],
  async run({ flags, globals, out }) {
    const api = globals.client(SupervisorService, 'ctrd');
    const [i, services] = await Promise.all([
      api.info({}, { timeoutMs: 10_000 }),
      api.listServices({}, { timeoutMs: 5000 }),
    ]);
    const healthy = services.services.filter((s) => s.state === ServiceState.SERVICE_STATE_HEALTHY).length;
    const info = {
      ID: i.instance,
      Containers: i.containers,
      ContainersRunning: i.containersRunning,
      ContainersPaused: i.containersPaused,
      ContainersStopped: i.containersStopped,
      Images: i.images,
      ServerVersion: VERSION,
      Driver: i.storageDriver,
      CgroupVersion: i.cgroupVersion,
      KernelVersion: i.kernelVersion,
      OperatingSystem: i.operatingSystem,
      OSType: 'linux',
      Architecture: i.architecture === 'x64' ? 'x86_64' : i.architecture,
      NCPU: i.cpus,
      MemTotal: Number(i.memoryBytes),
      Instance: i.instance,
      RootDir: i.root,
      StateDir: i.state,
      EventsURL: i.eventsUrl,
      EventsEmbedded: i.eventsEmbedded,
      Services: services.services.length,
      ServicesHealthy: healthy,
    };
    const format = flags.format as string | undefined;
    if (format) return printOne(out, format, info);
    out.write(
      [
        'Server:',
        ` Containers: ${info.Containers}`,
        `  Running: ${info.ContainersRunning}`,
        `  Paused: ${info.ContainersPaused}`,
        `  Stopped: ${info.ContainersStopped}`,
        ` Images: ${info.Images}`,
        ` Server Version: ${info.ServerVersion}`,
        ` Storage Driver: ${info.Driver}`,
        ` Cgroup Version: ${info.CgroupVersion}`,
        ` Services: ${info.Services} (${info.ServicesHealthy} healthy)`,
        ` Events: ${info.EventsURL}${info.EventsEmbedded ? ' (embedded)' : ''}`,
        ` Kernel Version: ${info.KernelVersion}`,
        ` Operating System: ${info.OperatingSystem}`,
        ` OSType: ${info.OSType}`,
        ` Architecture: ${info.Architecture}`,
        ` CPUs: ${info.NCPU}`,
        ` Total Memory: ${bytesSize(info.MemTotal)}`,
        ` Instance: ${info.Instance}`,
        ` Root Dir: ${info.RootDir}`,
        ` State Dir: ${info.StateDir}`,
        '',
      ].join('\n'),
    );
  },
};
