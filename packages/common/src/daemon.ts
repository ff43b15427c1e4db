/**
 * What every ctr service daemon does the same way: read its configuration,
 * log, connect the event bus, serve its gRPC API and health on its socket in
 * the state dir, and shut down cleanly on SIGTERM. A service supplies only its
 * name and its API bindings.
 */
import { type Config, type Layout, layout, loadConfig } from './config.js';
import { parseDaemonFlags, resolveEventsUrl } from './daemon-flags.js';
import { EventBus } from './events.js';
import { type RunningServer, type ServiceBinding, type ServiceDef, serve } from './grpc.js';
import { HealthReporter, Serving } from './health.js';
import { createLogger, type Logger } from './log.js';

export interface DaemonContext {
  name: string;
  config: Config;
  layout: Layout;
  log: Logger;
  bus: EventBus;
  health: HealthReporter;
}

export interface DaemonSpec {
  name: string;
  /**
   * The services it serves. They answer UNAVAILABLE ("starting"), which
   * clients retry, until services() has returned, never UNIMPLEMENTED.
   */
  api: ServiceDef[];
  /** The daemon's API; called once the event bus is connected. */
  services(ctx: DaemonContext): Promise<ServiceBinding[]> | ServiceBinding[];
  /**
   * Start-up work that runs with the API registered (calls can wait for it
   * rather than meet UNIMPLEMENTED) but before health says SERVING, such as
   * a reconcile. Its failure stops the daemon.
   */
  ready?(ctx: DaemonContext): Promise<void>;
  /** Releases what the daemon holds, before the socket closes. */
  stop?(ctx: DaemonContext): Promise<void>;
}

export { DAEMON_FLAGS, parseDaemonFlags, resolveEventsUrl } from './daemon-flags.js';

export async function runDaemon(spec: DaemonSpec, argv = process.argv.slice(2)): Promise<void> {
  let config: Config;
  try {
    config = loadConfig(parseDaemonFlags(argv));
  } catch (err) {
    process.stderr.write(`${spec.name}: ${(err as Error).message}\n`);
    process.exit(2);
  }
  const log = createLogger({ name: spec.name, level: config.log.level });
  const paths = layout(config);
  const health = new HealthReporter();
  health.set('', Serving.NOT_SERVING);
  let server: RunningServer | undefined;
  let ctx: DaemonContext | undefined;
  let stopping = false;

  const shutdown = async (signal: string, code = 0) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'shutting down');
    health.set('', Serving.NOT_SERVING);
    try {
      if (ctx && spec.stop) await spec.stop(ctx);
      await server?.close();
      await ctx?.bus.close();
    } catch (err) {
      log.error({ err }, 'shutdown failed');
      code = 1;
    }
    log.info('stopped');
    log.flush();
    process.exit(code);
  };
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('uncaughtException', (err) => {
    log.fatal({ err }, 'uncaught exception');
    log.flush();
    process.exit(1);
  });

  try {
    // Serve first (health says NOT_SERVING), so the supervisor sees the process come up.
    server = await serve(paths.serviceSocket(spec.name), [health.binding()]);
    server.starting(spec.name, spec.api);
    const url = await resolveEventsUrl(config);
    const bus = await EventBus.connect({
      url,
      instance: config.instance,
      source: spec.name,
      log,
      maxAgeSeconds: config.events.maxAgeSeconds,
      waitOnFirstConnect: true,
    });
    ctx = { name: spec.name, config, layout: paths, log, bus, health };
    server.add(await spec.services(ctx));
    if (spec.ready) await spec.ready(ctx);
    health.set('', Serving.SERVING);
    log.info({ socket: server.socketPath, events: url, pid: process.pid }, 'serving');
  } catch (err) {
    log.fatal({ err }, 'failed to start');
    await shutdown('startup-failure', 1);
  }
}
