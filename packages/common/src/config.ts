/**
 * Engine configuration. Every value has a default; an optional JSON config
 * file overrides defaults, the environment overrides the file, and flags
 * override everything: defaults → file → env → flags.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { invalidArgument } from './errors.js';
import { validateInstance } from './names.js';

export interface Config {
  /** Persistent state: content, snapshots, metadata databases, logs, NATS storage. */
  root: string;
  /** Runtime state: sockets, shims, netns, bundles. */
  state: string;
  /** Names this engine's objects on the host; two instances never share any. */
  instance: string;
  events: {
    /** External NATS URL; empty means ctrd runs an embedded nats-server. */
    url: string;
    /** How long the stream keeps events, in seconds. */
    maxAgeSeconds: number;
  };
  network: {
    /** Subnet of the default bridge network. */
    defaultSubnet: string;
    /** Where `network create` without --subnet takes a subnet from... */
    pool: string;
    /** ...in blocks of this prefix length. */
    poolSize: number;
  };
  registry: {
    mirrors: Record<string, string[]>;
    insecure: string[];
  };
  log: {
    level: string;
  };
  shim: {
    /** Shims booted ahead of need, so a start does not wait for one (0: none). */
    warm: number;
    /**
     * Containers one shim hosts. 1 (the default): a shim per container, as
     * docker has it. More: containers share shims, as containerd groups a
     * pod's, for a fraction of the memory; a shim's crash then costs each of
     * its containers its exit status.
     */
    group: number;
    /**
     * Warm shims are forked from a zygote, a shim that loaded and compiled
     * itself once: a few ms each instead of a Node boot, and their heaps
     * shared with it copy-on-write. false: each boots on its own.
     */
    zygote: boolean;
  };
  /** The config file that was read, if any. */
  configFile: string;
}

export const DEFAULT_CONFIG_FILE = '/etc/ctr/config.json';

export function defaultConfig(): Config {
  return {
    root: '/var/lib/ctr',
    state: '/run/ctr',
    instance: 'default',
    events: { url: '', maxAgeSeconds: 7 * 24 * 3600 },
    network: { defaultSubnet: '172.17.0.0/16', pool: '172.17.0.0/12', poolSize: 16 },
    registry: { mirrors: {}, insecure: [] },
    log: { level: 'info' },
    shim: { warm: 1, group: 1, zygote: true },
    configFile: '',
  };
}

/** Values given as flags; undefined means "not given". */
export interface ConfigFlags {
  config?: string;
  root?: string;
  state?: string;
  instance?: string;
  eventsUrl?: string;
  logLevel?: string;
}

type Env = Record<string, string | undefined>;

export function loadConfig(flags: ConfigFlags = {}, env: Env = process.env): Config {
  const cfg = defaultConfig();
  const explicit = flags.config ?? env.CTR_CONFIG;
  const file = explicit ?? DEFAULT_CONFIG_FILE;
  const fromFile = readConfigFile(file, explicit !== undefined);
  if (fromFile) {
    mergeFile(cfg as unknown as Record<string, unknown>, fromFile, file);
    cfg.configFile = file;
  }

  const pick = (flag: string | undefined, envName: string) => flag ?? (env[envName] || undefined);
  cfg.root = pick(flags.root, 'CTR_ROOT') ?? cfg.root;
  cfg.state = pick(flags.state, 'CTR_STATE') ?? cfg.state;
  cfg.instance = pick(flags.instance, 'CTR_INSTANCE') ?? cfg.instance;
  cfg.events.url = pick(flags.eventsUrl, 'CTR_EVENTS_URL') ?? cfg.events.url;
  cfg.log.level = pick(flags.logLevel, 'CTR_LOG_LEVEL') ?? cfg.log.level;
  const subnet = env.CTR_DEFAULT_SUBNET;
  if (subnet) cfg.network.defaultSubnet = subnet;
  const pool = env.CTR_NETWORK_POOL;
  if (pool) {
    const [base, size] = pool.split(',');
    cfg.network.pool = base;
    if (size) cfg.network.poolSize = Number(size);
  }

  validateInstance(cfg.instance);
  for (const key of ['root', 'state'] as const) {
    if (!cfg[key].startsWith('/')) throw invalidArgument(`${key} must be an absolute path: ${cfg[key]}`);
  }
  return cfg;
}

function readConfigFile(file: string, required: boolean): Record<string, unknown> | undefined {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw invalidArgument(`cannot read config file ${file}: ${(err as Error).message}`);
  }
  try {
    const parsed = JSON.parse(text);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
    return parsed;
  } catch (err) {
    throw invalidArgument(`config file ${file} is not a JSON object: ${(err as Error).message}`);
  }
}

/** Deep-merges the file over the defaults, refusing unknown keys and wrong types. */
function mergeFile(target: Record<string, unknown>, source: Record<string, unknown>, file: string, path = '') {
  for (const [key, value] of Object.entries(source)) {
    const where = path ? `${path}.${key}` : key;
    if (!(key in target) || key === 'configFile') throw invalidArgument(`config file ${file}: unknown key ${where}`);
    const current = target[key];
    const isObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
    if (isObject(current) && Object.keys(current as object).length > 0) {
      if (!isObject(value)) throw invalidArgument(`config file ${file}: ${where} must be an object`);
      mergeFile(current as Record<string, unknown>, value as Record<string, unknown>, file, where);
    } else {
      if (
        isObject(current)
          ? !isObject(value)
          : typeof value !== typeof current || Array.isArray(value) !== Array.isArray(current)
      ) {
        throw invalidArgument(
          `config file ${file}: ${where} must be of type ${Array.isArray(current) ? 'array' : typeof current}`,
        );
      }
      target[key] = value;
    }
  }
}

/** Where things live under the root and state dirs. One place, so every process agrees. */
export function layout(cfg: Pick<Config, 'root' | 'state'>) {
  return {
    supervisorSocket: join(cfg.state, 'ctrd.sock'),
    supervisorPidFile: join(cfg.state, 'ctrd.pid'),
    serviceSocket: (name: string) => join(cfg.state, `${name}.sock`),
    serviceRecord: (name: string) => join(cfg.state, 'services', `${name}.json`),
    servicesDir: join(cfg.state, 'services'),
    natsRecord: join(cfg.state, 'nats.json'),
    natsStore: join(cfg.root, 'nats'),
    logsDir: join(cfg.root, 'logs'),
    logFile: (name: string) => join(cfg.root, 'logs', `${name}.log`),
    shimsDir: join(cfg.state, 'shims'),
    /** A shim's own directory: its socket, pid file, log and its tasks' exit files. */
    shimDir: (id: string) => join(cfg.state, 'shims', id),
    shimSocket: (id: string) => join(cfg.state, 'shims', id, 'shim.sock'),
    bundleDir: (id: string) => join(cfg.state, 'bundles', id),
    /** Compiled seccomp filters, kept for the next container (made again after a reboot). */
    seccompDir: join(cfg.state, 'seccomp'),
    /** V8's compiled code of the shim's bundle (NODE_COMPILE_CACHE), kept for the next shim. */
    compileCache: join(cfg.state, 'compile-cache'),
    /** The shim zygote's scratch: the socket it rehearses serving on before its first fork. */
    zygoteDir: join(cfg.state, 'zygote'),
    containerDir: (id: string) => join(cfg.root, 'containers', id),
  };
}
export type Layout = ReturnType<typeof layout>;
