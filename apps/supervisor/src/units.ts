/**
 * What ctrd runs: the embedded nats-server (unless events go to an external
 * NATS) and the four services, each as a ManagedProcess with a health probe.
 */
import { existsSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { HealthCheckResponse_ServingStatus, HealthService } from '@ctr/api/health';
import type { Config, Layout } from '@ctr/common/config';
import { dial } from '@ctr/common/grpc';
import { VERSION } from '@ctr/common/version';
import { ManagedProcess } from './process.js';
import { readRecord } from './records.js';

export const SERVICE_NAMES = ['image-service', 'snapshotter', 'network-service', 'container-service'] as const;
export type ServiceName = (typeof SERVICE_NAMES)[number];
export const NATS = 'nats-server';

export interface Unit {
  name: string;
  proc: ManagedProcess;
  /** Resolves true when the daemon answers as healthy. */
  probe(): Promise<boolean>;
  close(): void;
}

/** apps/supervisor/dist/units.js → apps/<service>/dist/main.js */
export function serviceMain(name: ServiceName): string {
  return fileURLToPath(new URL(`../../${name}/dist/main.js`, import.meta.url));
}

function daemonArgs(config: Config, eventsUrl: string): string[] {
  const args = [
    '--root',
    config.root,
    '--state',
    config.state,
    '--instance',
    config.instance,
    '--events-url',
    eventsUrl,
  ];
  if (config.configFile) args.push('--config', config.configFile);
  args.push('--log-level', config.log.level);
  return args;
}

export function serviceUnit(name: ServiceName, config: Config, paths: Layout, eventsUrl: string): Unit {
  const main = serviceMain(name);
  const proc = new ManagedProcess({
    name,
    command: process.execPath,
    args: [main, ...daemonArgs(config, eventsUrl)],
    logFile: paths.logFile(name),
    recordPath: paths.serviceRecord(name),
    version: VERSION,
    matches: (argv) => argv[1] === main && argv.includes(config.state),
  });
  const health = dial(HealthService, paths.serviceSocket(name));
  return {
    name,
    proc,
    probe: async () => {
      try {
        const res = await health.check({ service: '' }, { timeoutMs: 1000 });
        return res.status === HealthCheckResponse_ServingStatus.SERVING;
      } catch {
        return false;
      }
    },
    close: () => health.close(),
  };
}

export function findNatsServer(): string {
  const candidates = [
    process.env.CTR_NATS_SERVER,
    '/usr/sbin/nats-server',
    '/usr/bin/nats-server',
    '/usr/local/bin/nats-server',
  ];
  for (const c of candidates) if (c && existsSync(c)) return c;
  throw new Error(
    'nats-server not found: install Debian package nats-server, set CTR_NATS_SERVER, or configure events.url',
  );
}

function tcpAlive(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = createConnection({ host: '127.0.0.1', port });
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.once('data', (d) => done(d.toString().startsWith('INFO ')));
    sock.once('error', () => done(false));
  });
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The embedded nats-server with JetStream, storage under the root dir, on a
 * loopback port kept in its record so a restart (of it or of ctrd) reuses it.
 */
export async function natsUnit(config: Config, paths: Layout): Promise<Unit & { url: string; port: number }> {
  const previous = await readRecord(paths.natsRecord);
  let port = previous?.port ?? 0;
  if (!port || !(await portFree(port))) {
    // Taken: by our own nats-server (adopted below, matching argv) or by a stranger.
    if (!port || !(previous && (await tcpAlive(port)))) port = await freePort();
  }
  const binary = findNatsServer();
  const proc = new ManagedProcess({
    name: NATS,
    command: binary,
    args: ['-js', '-sd', paths.natsStore, '-a', '127.0.0.1', '-p', String(port), '-n', `ctr-${config.instance}`],
    logFile: paths.logFile(NATS),
    recordPath: paths.natsRecord,
    version: '',
    matches: (argv) => argv[0] === binary && argv.includes(paths.natsStore) && argv.includes(String(port)),
  });
  return {
    name: NATS,
    proc,
    url: `nats://127.0.0.1:${port}`,
    port,
    probe: () => tcpAlive(port),
    close: () => undefined,
  };
}
