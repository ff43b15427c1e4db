/** ctrd's gRPC API: the Supervisor service and the Events stream for clients. */
import { readFile } from 'node:fs/promises';
import { arch, cpus, release, totalmem } from 'node:os';
import { ContainersService } from '@ctr/api/containers/v1/containers';
import { ImagesService } from '@ctr/api/images/v1/images';
import {
  EventsService,
  type InfoResponse,
  SupervisorService,
  type SubscribeRequest,
  type SubscribeResponse,
} from '@ctr/api/supervisor/v1/supervisor';
import type { Config, Layout } from '@ctr/common/config';
import type { EventBus } from '@ctr/common/events';
import { dial, implement, type ServiceBinding } from '@ctr/common/grpc';
import { API_VERSION, VERSION } from '@ctr/common/version';
import { hostLayout } from '@ctr/cgroups';
import type { ServerWritableStream } from '@grpc/grpc-js';
import type { Supervisor } from './supervisor.js';

export interface ApiDeps {
  config: Config;
  layout: Layout;
  supervisor: Supervisor;
  bus: EventBus;
  natsVersion: string;
  startedAt: Date;
  embeddedNats: boolean;
  eventsUrl: string;
}

export function supervisorApi(deps: ApiDeps): ServiceBinding[] {
  return [
    {
      definition: SupervisorService,
      implementation: implement(SupervisorService, {
        listServices: async () => ({ services: deps.supervisor.list() }),
        restartService: async ({ name }) => deps.supervisor.restart(name),
        version: async () => ({
          version: VERSION,
          revision: process.env.CTR_REVISION ?? '',
          nodeVersion: process.version,
          natsVersion: deps.natsVersion,
          apiVersion: API_VERSION,
        }),
        info: () => info(deps),
      }),
    },
    {
      definition: EventsService,
      implementation: implement(EventsService, {
        subscribe: (req, call) => subscribe(deps.bus, req, call),
      }),
    },
  ];
}

async function osName(): Promise<string> {
  try {
    const text = await readFile('/etc/os-release', 'utf8');
    return /^PRETTY_NAME="?([^"\n]*)"?/m.exec(text)?.[1] ?? 'Linux';
  } catch {
    return 'Linux';
  }
}

async function info(deps: ApiDeps): Promise<InfoResponse> {
  const { config, layout } = deps;
  const res: InfoResponse = {
    instance: config.instance,
    root: config.root,
    state: config.state,
    eventsUrl: deps.eventsUrl,
    eventsEmbedded: deps.embeddedNats,
    kernelVersion: release(),
    operatingSystem: await osName(),
    architecture: arch(),
    cpus: cpus().length,
    memoryBytes: BigInt(totalmem()),
    cgroupVersion: { v2: '2', v1: '1', hybrid: 'hybrid' }[(await hostLayout()).mode],
    storageDriver: 'overlay2',
    containers: 0,
    containersRunning: 0,
    containersPaused: 0,
    containersStopped: 0,
    images: 0,
    startedAt: deps.startedAt,
  };
  // Counts come from their owners; a service that cannot answer yet leaves them at 0.
  const containers = dial(ContainersService, layout.serviceSocket('container-service'));
  const images = dial(ImagesService, layout.serviceSocket('image-service'));
  try {
    const [cs, is] = await Promise.allSettled([
      containers.list({ all: true, filters: [], size: false }, { timeoutMs: 2000 }),
      images.list({ filters: [] }, { timeoutMs: 2000 }),
    ]);
    if (cs.status === 'fulfilled') {
      for (const c of cs.value.containers) {
        res.containers++;
        const status = c.state?.status;
        if (status === 'running') res.containersRunning++;
        else if (status === 'paused') res.containersPaused++;
        else res.containersStopped++;
      }
    }
    if (is.status === 'fulfilled') res.images = is.value.images.length;
  } finally {
    containers.close();
    images.close();
  }
  return res;
}

/**
 * Streams events to a client. With `until`, the stream ends once the replay
 * has passed that time (or nothing more is kept); otherwise it follows until
 * the client goes away.
 */
async function subscribe(
  bus: EventBus,
  req: SubscribeRequest,
  call: ServerWritableStream<SubscribeRequest, SubscribeResponse>,
): Promise<void> {
  const until = req.until?.getTime();
  await new Promise<void>((resolve) => {
    let idle: NodeJS.Timeout | undefined;
    const finish = () => {
      clearTimeout(idle);
      void sub.close().then(resolve);
    };
    const armIdle = () => {
      if (until === undefined || until > Date.now()) return;
      clearTimeout(idle);
      idle = setTimeout(finish, 500);
    };
    const sub = bus.subscribe({ topics: req.topics, since: req.since }, (envelope, sequence) => {
      if (until !== undefined && (envelope.timestamp?.getTime() ?? 0) > until) return finish();
      call.write({ envelope, sequence: BigInt(sequence) });
      armIdle();
    });
    armIdle();
    if (until !== undefined && until > Date.now()) setTimeout(finish, until - Date.now() + 500);
    call.on('cancelled', finish);
    call.on('close', finish);
    void sub.done.then(resolve);
  });
}
