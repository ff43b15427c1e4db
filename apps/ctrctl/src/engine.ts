/** Which engine ctrctl talks to (--root/--state/--instance or CTR_*), and its clients. */
import { type Config, layout, loadConfig } from '@ctr/common/config';
import {
  type ApiClient,
  answeredByDaemon,
  dialH2,
  preconnect,
  type ServiceDef,
  socketAddress,
} from '@ctr/common/grpc-client';
import { CtrError, unavailable } from '@ctr/common/errors';
import type { FlagSpec, FlagValues } from './args.js';

export const GLOBAL_FLAGS: FlagSpec[] = [
  { name: 'root', type: 'string', value: 'dir', help: 'Root directory of the engine (env CTR_ROOT)' },
  { name: 'state', type: 'string', value: 'dir', help: 'State directory of the engine (env CTR_STATE)' },
  { name: 'instance', type: 'string', value: 'name', help: 'Instance name of the engine (env CTR_INSTANCE)' },
  { name: 'config', type: 'string', value: 'file', help: 'Engine config file (env CTR_CONFIG)' },
  { name: 'help', type: 'bool', help: 'Print usage' },
];

export interface Globals {
  config: Config;
  /** A client of a daemon's API; calls fail with one clear "cannot connect" line when it is down. */
  client<D extends ServiceDef>(definition: D, daemon: 'ctrd' | string): ApiClient<D>;
  close(): void;
}

const loaded = new Map<string, Config>();
/**
 * The engine's config as the global flags (or CTR_* and the config file) give
 * it; loaded once for the same flags and environment (dialAhead's, then the
 * command's).
 */
function configOf(flags: FlagValues): Config {
  const opts = {
    root: flags.root as string | undefined,
    state: flags.state as string | undefined,
    instance: flags.instance as string | undefined,
    config: flags.config as string | undefined,
  };
  // The environment's CTR_* values are part of what loadConfig reads.
  const key = JSON.stringify([opts, Object.entries(process.env).filter(([k]) => k.startsWith('CTR_'))]);
  let config = loaded.get(key);
  if (!config) {
    config = loadConfig(opts);
    loaded.set(key, config);
  }
  return config;
}

export function resolveGlobals(flags: FlagValues): Globals {
  const config = configOf(flags);
  const paths = layout(config);
  const clients: ApiClient<ServiceDef>[] = [];
  return {
    config,
    client(definition, daemon) {
      const socket = daemon === 'ctrd' ? paths.supervisorSocket : paths.serviceSocket(daemon);
      const c = dialH2(definition, socket);
      clients.push(c as unknown as ApiClient<ServiceDef>);
      return c;
    },
    close() {
      for (const c of clients) c.close();
    },
  };
}

/**
 * Dials `daemon` of the engine that `flags` name, ahead of the command's
 * first call to it (see preconnect); the release closes it if the command
 * never used it. A config that cannot be loaded dials nothing: the command
 * reports it.
 */
export function dialAhead(flags: FlagValues, daemon: string): () => void {
  try {
    const paths = layout(configOf(flags));
    return preconnect(daemon === 'ctrd' ? paths.supervisorSocket : paths.serviceSocket(daemon));
  } catch {
    return () => undefined;
  }
}

/** Rewrites an UNAVAILABLE error into docker's "is the daemon running?" line. */
export function explainUnavailable(err: unknown, config: Config): unknown {
  // A daemon that answered UNAVAILABLE (a registry it could not reach) is running: only a channel failure is rewritten.
  if (err instanceof CtrError && err.kind === 'Unavailable' && !answeredByDaemon(err)) {
    return unavailable(
      `Cannot connect to the ctr daemon at ${socketAddress(layout(config).supervisorSocket).replace('unix:', 'unix://')}. Is ctrd running?`,
      { cause: err },
    );
  }
  return err;
}
