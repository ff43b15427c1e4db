/**
 * ctrd: the supervisor. It starts the event bus (an embedded nats-server with
 * JetStream, or a configured external NATS) and the four services, each as a
 * detached process on its own socket; watches and restarts them; and serves
 * the Supervisor API. Killing ctrd stops nothing: a new ctrd adopts the
 * running processes from their records in the state dir. SIGTERM stops the
 * services and the embedded NATS, never containers.
 */
import { execFile } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { promisify } from 'node:util';
import { type Config, layout, loadConfig } from '@ctr/common/config';
import { parseDaemonFlags } from '@ctr/common/daemon';
import { EventBus } from '@ctr/common/events';
import { type RunningServer, serve } from '@ctr/common/grpc';
import { HealthReporter } from '@ctr/common/health';
import { createLogger } from '@ctr/common/log';
import { VERSION } from '@ctr/common/version';
import { processAlive, readProcStat } from '@ctr/sys/proc';
import { supervisorApi } from './api.js';
import { readRecord, removeRecord, writeRecord } from './records.js';
import { Supervisor } from './supervisor.js';
import { findNatsServer, NATS, natsUnit, SERVICE_NAMES, serviceUnit } from './units.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let config: Config;
try {
  config = loadConfig(parseDaemonFlags(process.argv.slice(2)));
} catch (err) {
  process.stderr.write(`ctrd: ${(err as Error).message}\n`);
  process.exit(2);
}
const log = createLogger({ name: 'ctrd', level: config.log.level });
const paths = layout(config);
const supervisor = new Supervisor(log);
let server: RunningServer | undefined;
let bus: EventBus | undefined;
let stopping = false;
let claimed = false;

async function claimPidFile() {
  const previous = await readRecord(paths.supervisorPidFile);
  if (previous && previous.pid !== process.pid && (await processAlive(previous.pid, previous.startTime))) {
    throw new Error(`ctrd is already running for this state dir (pid ${previous.pid})`);
  }
  const stat = await readProcStat(process.pid);
  await writeRecord(paths.supervisorPidFile, {
    name: 'ctrd',
    pid: process.pid,
    startTime: stat?.startTime ?? 0,
    startedAt: new Date().toISOString(),
    restarts: 0,
    version: VERSION,
  });
  claimed = true;
}

async function connectBus(url: string): Promise<EventBus> {
  // JetStream may take a moment after the port opens.
  for (let attempt = 0; ; attempt++) {
    try {
      return await EventBus.connect({
        url,
        instance: config.instance,
        source: 'ctrd',
        log,
        maxAgeSeconds: config.events.maxAgeSeconds,
      });
    } catch (err) {
      if (attempt >= 100) throw err;
      await sleep(100);
    }
  }
}

async function natsVersion(): Promise<string> {
  try {
    const { stdout } = await promisify(execFile)(findNatsServer(), ['--version']);
    return stdout.trim().replace(/^nats-server: /, '');
  } catch {
    return '';
  }
}

async function start() {
  const startedAt = new Date();
  await mkdir(config.root, { recursive: true, mode: 0o711 });
  await mkdir(config.state, { recursive: true, mode: 0o711 });
  await mkdir(paths.logsDir, { recursive: true, mode: 0o700 });
  await claimPidFile();

  let eventsUrl = config.events.url;
  const embedded = !eventsUrl;
  if (embedded) {
    const nats = await natsUnit(config, paths);
    eventsUrl = nats.url;
    await supervisor.add(nats, { url: nats.url, port: nats.port });
  }
  bus = await connectBus(eventsUrl);
  supervisor.attachBus(bus);

  const health = new HealthReporter();
  server = await serve(paths.supervisorSocket, [
    health.binding(),
    ...supervisorApi({
      config,
      layout: paths,
      supervisor,
      bus,
      natsVersion: embedded ? await natsVersion() : (bus.nc.info?.version ?? ''),
      startedAt,
      embeddedNats: embedded,
      eventsUrl,
    }),
  ]);

  await Promise.all(SERVICE_NAMES.map((name) => supervisor.add(serviceUnit(name, config, paths, eventsUrl))));
  supervisor.watch();
  log.info({ socket: paths.supervisorSocket, events: eventsUrl, instance: config.instance }, 'ctrd ready');
}

async function shutdown(signal: string, code = 0) {
  if (stopping) return;
  stopping = true;
  log.info({ signal }, 'ctrd stopping services (containers keep running)');
  try {
    await server?.close();
    await bus?.close();
    await supervisor.shutdown([NATS]);
    await removeRecord(paths.supervisorPidFile);
    await rm(paths.servicesDir, { recursive: true, force: true });
  } catch (err) {
    log.error({ err }, 'shutdown failed');
    code = 1;
  }
  log.info('ctrd stopped');
  log.flush();
  process.exit(code);
}

process.on('SIGTERM', () => void shutdown('SIGTERM'));
process.on('SIGINT', () => void shutdown('SIGINT'));
process.on('uncaughtException', (err) => {
  log.fatal({ err }, 'uncaught exception');
  log.flush();
  process.exit(1);
});

start().catch(async (err) => {
  log.fatal({ err: err.message }, 'ctrd failed to start');
  process.stderr.write(`ctrd: ${err.message}\n`);
  // Before the pid file is ours, everything in the state dir belongs to another ctrd.
  if (!claimed) {
    log.flush();
    process.exit(1);
  }
  await shutdown('startup-failure', 1);
});
