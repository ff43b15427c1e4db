/**
 * docker run / create flags → the container-service's ContainerConfig, with
 * docker's syntax and error lines for each (ports, volumes, --mount, sizes,
 * restart policies, ulimits...). Everything that depends on the client's side
 * (relative bind paths, -e KEY from this environment, --env-file,
 * --security-opt seccomp=FILE) is resolved here, as docker's CLI does.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { ContainerConfig, type MountSpec, type PortBinding } from '@ctr/api/containers/v1/containers';
import type { FlagSpec, FlagValues } from './args.js';
import { UsageError } from './errors.js';

const list = (name: string, help: string, short?: string, value = 'list'): FlagSpec => ({
  name,
  short,
  type: 'list',
  value,
  help,
});
const str = (name: string, help: string, short?: string, value = 'string'): FlagSpec => ({
  name,
  short,
  type: 'string',
  value,
  help,
});
const bool = (name: string, help: string, short?: string): FlagSpec => ({ name, short, type: 'bool', help });

export const CREATE_FLAGS: FlagSpec[] = [
  bool('interactive', 'Keep STDIN open even if not attached', 'i'),
  bool('tty', 'Allocate a pseudo-TTY', 't'),
  str('name', 'Assign a name to the container'),
  list('env', 'Set environment variables', 'e'),
  list('env-file', 'Read in a file of environment variables'),
  list('volume', 'Bind mount a volume', 'v'),
  list('mount', 'Attach a filesystem mount to the container', undefined, 'mount'),
  list('publish', "Publish a container's port(s) to the host", 'p'),
  bool('publish-all', 'Publish all exposed ports to random ports', 'P'),
  list('expose', 'Expose a port or a range of ports'),
  str('network', 'Connect a container to a network', undefined, 'network'),
  { ...str('net', 'Connect a container to a network', undefined, 'network'), hidden: true },
  list('network-alias', 'Add network-scoped alias for the container'),
  str('ip', 'IPv4 address (e.g., 172.30.100.104)'),
  str('hostname', 'Container host name', 'h'),
  str('domainname', 'Container NIS domain name'),
  list('dns', 'Set custom DNS servers'),
  list('dns-search', 'Set custom DNS search domains'),
  list('dns-option', 'Set DNS options'),
  list('add-host', 'Add a custom host-to-IP mapping (host:ip)'),
  str('memory', 'Memory limit', 'm', 'bytes'),
  str('memory-swap', "Swap limit equal to memory plus swap: '-1' to enable unlimited swap", undefined, 'bytes'),
  str('memory-reservation', 'Memory soft limit', undefined, 'bytes'),
  str('cpus', 'Number of CPUs', undefined, 'decimal'),
  { name: 'cpu-shares', short: 'c', type: 'int', help: 'CPU shares (relative weight)' },
  str('cpuset-cpus', 'CPUs in which to allow execution (0-3, 0,1)'),
  { name: 'pids-limit', type: 'int', help: 'Tune container pids limit (set -1 for unlimited)' },
  str('user', 'Username or UID (format: <name|uid>[:<group|gid>])', 'u'),
  str('workdir', 'Working directory inside the container', 'w'),
  str('entrypoint', 'Overwrite the default ENTRYPOINT of the image', undefined, 'string'),
  bool('read-only', "Mount the container's root filesystem as read only"),
  list('tmpfs', 'Mount a tmpfs directory'),
  list('cap-add', 'Add Linux capabilities'),
  list('cap-drop', 'Drop Linux capabilities'),
  bool('privileged', 'Give extended privileges to this container'),
  list('security-opt', 'Security Options'),
  str('userns', 'User namespace to use'),
  str('restart', 'Restart policy to apply when a container exits', undefined, 'string'),
  bool('rm', 'Automatically remove the container and its associated anonymous volumes when it exits'),
  bool('init', 'Run an init inside the container that forwards signals and reaps processes'),
  str('log-driver', 'Logging driver for the container'),
  list('log-opt', 'Log driver options'),
  list('label', 'Set meta data on a container', 'l'),
  str('stop-signal', 'Signal to stop the container'),
  { name: 'stop-timeout', type: 'int', help: 'Timeout (in seconds) to stop a container' },
  list('ulimit', 'Ulimit options'),
  str('shm-size', 'Size of /dev/shm', undefined, 'bytes'),
  str('pull', 'Pull image before creating ("always", "missing", "never")'),
  str('platform', 'Set platform if server is multi-platform capable'),
  bool('quiet', 'Suppress the pull output', 'q'),
];

export const RUN_FLAGS: FlagSpec[] = [
  bool('detach', 'Run container in background and print container ID', 'd'),
  str('detach-keys', 'Override the key sequence for detaching a container'),
  bool('sig-proxy', 'Proxy received signals to the process'),
  ...CREATE_FLAGS,
];

/** docker's RAMInBytes: 512, 512b, 64k, 128m, 1g (binary units). */
export function parseBytes(value: string, flag: string): bigint {
  const m = /^(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?$/i.exec(value.trim());
  if (!m) throw new UsageError(`invalid argument "${value}" for "${flag}" flag: invalid size: '${value}'`);
  const unit = { '': 1, b: 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[m[2].toLowerCase() as 'b'];
  return BigInt(Math.floor(Number(m[1]) * unit));
}

/** -p [IP:][HOST]:CTR[/proto], CTR[/proto]. */
export function parsePublish(value: string): PortBinding[] {
  const bad = () => new UsageError(`invalid argument "${value}" for "-p, --publish" flag: invalid port format`);
  let rest = value;
  let protocol = 'tcp';
  const slash = rest.lastIndexOf('/');
  if (slash >= 0) {
    protocol = rest.slice(slash + 1).toLowerCase();
    rest = rest.slice(0, slash);
    if (protocol !== 'tcp' && protocol !== 'udp' && protocol !== 'sctp') throw bad();
  }
  const parts = rest.split(':');
  let ip = '';
  let host = '';
  let ctr = '';
  if (parts.length === 1) [ctr] = parts;
  else if (parts.length === 2) [host, ctr] = parts;
  else if (parts.length === 3) [ip, host, ctr] = parts;
  else throw bad();
  const port = (p: string) => {
    if (!/^\d+$/.test(p) || Number(p) < 1 || Number(p) > 65535) throw bad();
    return Number(p);
  };
  const range = (p: string) => {
    const [a, b = a] = p.split('-');
    const lo = port(a);
    const hi = port(b);
    if (hi < lo) throw bad();
    return Array.from({ length: hi - lo + 1 }, (_, i) => lo + i);
  };
  if (ip && !/^\d+\.\d+\.\d+\.\d+$/.test(ip)) throw bad();
  const ctrPorts = range(ctr);
  const hostPorts = host ? range(host) : [];
  if (hostPorts.length && hostPorts.length !== ctrPorts.length && hostPorts.length !== 1) throw bad();
  return ctrPorts.map((c, i) => ({
    protocol,
    containerPort: c,
    hostPort: hostPorts.length === ctrPorts.length ? hostPorts[i] : (hostPorts[0] ?? 0),
    hostIp: ip,
  }));
}

/** -v HOST:CTR[:opts] (bind), NAME:CTR[:opts] (named volume), CTR (anonymous volume). */
export function parseVolume(value: string): MountSpec {
  const parts = value.split(':');
  const bad = () => new UsageError(`invalid argument "${value}" for "-v, --volume" flag: invalid spec: ${value}`);
  let source = '';
  let target = '';
  let opts: string[] = [];
  if (parts.length === 1) [target] = parts;
  else if (parts.length === 2) {
    if (parts[1].startsWith('/')) [source, target] = parts;
    else {
      [target] = parts;
      opts = parts[1].split(',');
    }
  } else if (parts.length === 3) {
    [source, target] = parts;
    opts = parts[2].split(',');
  } else throw bad();
  if (!target.startsWith('/')) throw bad();
  for (const o of opts)
    if (!['ro', 'rw', 'z', 'Z', 'shared', 'slave', 'private', 'rshared', 'rslave', 'rprivate', 'nocopy'].includes(o))
      throw bad();
  const readOnly = opts.includes('ro');
  const isPath = source.startsWith('/') || source.startsWith('.');
  return {
    type: source && isPath ? 'bind' : 'volume',
    source: isPath ? resolve(source) : source,
    target,
    readOnly,
    options: [],
    hostPath: '',
  };
}

/** --mount type=bind|volume|tmpfs,source=,target=,readonly,... */
export function parseMount(value: string): MountSpec {
  const m: MountSpec = { type: 'volume', source: '', target: '', readOnly: false, options: [], hostPath: '' };
  for (const field of value.split(',')) {
    const eq = field.indexOf('=');
    const key = (eq < 0 ? field : field.slice(0, eq)).trim().toLowerCase();
    const val = eq < 0 ? '' : field.slice(eq + 1);
    switch (key) {
      case 'type':
        if (!['bind', 'volume', 'tmpfs'].includes(val))
          throw new UsageError(`invalid argument "${value}" for "--mount" flag: unsupported mount type "${val}"`);
        m.type = val;
        break;
      case 'source':
      case 'src':
        m.source = val;
        break;
      case 'target':
      case 'destination':
      case 'dst':
        m.target = val;
        break;
      case 'readonly':
      case 'ro':
        m.readOnly = val === '' || val === 'true' || val === '1';
        break;
      case 'tmpfs-size':
        m.options.push(`size=${parseBytes(val, '--mount')}`);
        break;
      case 'tmpfs-mode':
        m.options.push(`mode=${val}`);
        break;
      case 'bind-propagation':
      case 'volume-nocopy':
      case 'consistency':
        break;
      default:
        throw new UsageError(`invalid argument "${value}" for "--mount" flag: unexpected key '${key}' in '${field}'`);
    }
  }
  if (!m.target) throw new UsageError(`invalid argument "${value}" for "--mount" flag: target is required`);
  if (m.type === 'bind') {
    if (!m.source)
      throw new UsageError(
        `invalid argument "${value}" for "--mount" flag: source is required when specifying bind mount`,
      );
    m.source = resolve(m.source);
    if (!existsSync(m.source))
      throw new UsageError(`invalid mount config for type "bind": bind source path does not exist: ${m.source}`);
  }
  return m;
}

function parseEnvFile(path: string): string[] {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(
      `open ${path}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or directory' : (err as Error).message}`,
    );
  }
  return text
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
}

/** -e KEY=V as is; -e KEY takes KEY from this environment, or is dropped when unset (docker). */
function resolveEnv(entries: string[]): string[] {
  return entries.flatMap((e) => {
    if (e.includes('=')) return [e];
    const v = process.env[e];
    return v === undefined ? [] : [`${e}=${v}`];
  });
}

export function parseRestart(value: string): { name: string; maximumRetryCount: number } {
  if (!value) return { name: 'no', maximumRetryCount: 0 };
  const [name, count] = value.split(':');
  if (!['no', 'always', 'on-failure', 'unless-stopped'].includes(name))
    throw new UsageError(`invalid restart policy '${value}'`);
  if (count !== undefined) {
    if (name !== 'on-failure')
      throw new UsageError(`invalid restart policy: maximum retry count can only be used with 'on-failure'`);
    if (!/^\d+$/.test(count))
      throw new UsageError(`invalid restart policy: maximum retry count must be a number: ${count}`);
  }
  return { name, maximumRetryCount: Number(count ?? 0) };
}

function keyValues(values: string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const v of values) {
    const eq = v.indexOf('=');
    if (eq <= 0 && flag !== '--label')
      throw new UsageError(`invalid argument "${v}" for "${flag}" flag: expected key=value`);
    if (eq < 0) out[v] = '';
    else out[v.slice(0, eq)] = v.slice(eq + 1);
  }
  return out;
}

/** The ContainerConfig of `run`/`create` FLAGS IMAGE [CMD...]. */
export function buildConfig(flags: FlagValues, args: string[]): { name: string; config: ContainerConfig } {
  const l = (k: string) => (flags[k] as string[] | undefined) ?? [];
  const s = (k: string) => (flags[k] as string | undefined) ?? '';
  const image = args[0];
  const cmd = args.slice(1);
  const env = [...l('env-file').flatMap(parseEnvFile), ...l('env')];
  const mounts = [...l('volume').map(parseVolume), ...l('mount').map(parseMount)];
  const tmpfs: Record<string, string> = {};
  for (const t of l('tmpfs')) {
    const i = t.indexOf(':');
    tmpfs[i < 0 ? t : t.slice(0, i)] = i < 0 ? '' : t.slice(i + 1);
  }
  const ulimits = l('ulimit').map((u) => {
    const m = /^(\w+)=(-?\d+)(?::(-?\d+))?$/.exec(u);
    if (!m) throw new UsageError(`invalid argument "${u}" for "--ulimit" flag: invalid ulimit argument: ${u}`);
    return { name: m[1], soft: BigInt(m[2]), hard: BigInt(m[3] ?? m[2]) };
  });
  const securityOpt = l('security-opt').map((o) => {
    const [k, v = ''] = [o.slice(0, o.indexOf('=') < 0 ? o.length : o.indexOf('=')), o.slice(o.indexOf('=') + 1)];
    if (k === 'seccomp' && v && v !== 'unconfined') {
      try {
        return `seccomp=${JSON.stringify(JSON.parse(readFileSync(v, 'utf8')))}`;
      } catch (err) {
        throw new UsageError(`opening seccomp profile (${v}) failed: ${(err as Error).message}`);
      }
    }
    return o;
  });
  for (const h of l('add-host')) {
    if (!/^[^:]+:.+$/.test(h))
      throw new UsageError(`invalid argument "${h}" for "--add-host" flag: bad format for add-host: "${h}"`);
  }
  const userns = s('userns');
  if (userns && userns !== 'host')
    throw new UsageError(
      `invalid argument "${userns}" for "--userns" flag: user namespaces are not supported yet (only "host")`,
    );
  const logDriver = s('log-driver');
  if (logDriver && logDriver !== 'json-file')
    throw new UsageError(`log driver "${logDriver}" is not supported (json-file only)`);
  const cpus = s('cpus');
  if (cpus && !/^\d+(\.\d+)?$/.test(cpus))
    throw new UsageError(`invalid argument "${cpus}" for "--cpus" flag: failed to parse ${cpus} as a rational number`);
  const restart = parseRestart(s('restart'));
  if (flags.rm && restart.name !== 'no') throw new UsageError('Conflicting options: --restart and --rm');
  const memorySwap = s('memory-swap');
  const config = ContainerConfig.fromPartial({
    image,
    cmd,
    entrypoint: flags.entrypoint !== undefined ? (s('entrypoint') ? [s('entrypoint')] : []) : [],
    entrypointSet: flags.entrypoint !== undefined,
    env: resolveEnv(env),
    workingDir: s('workdir'),
    user: s('user'),
    hostname: s('hostname'),
    domainname: s('domainname'),
    tty: Boolean(flags.tty),
    openStdin: Boolean(flags.interactive),
    stdinOnce: Boolean(flags.interactive) && !flags.detach,
    labels: keyValues(l('label'), '--label'),
    stopSignal: s('stop-signal'),
    stopTimeout: (flags['stop-timeout'] as number | undefined) ?? 0,
    stopTimeoutSet: flags['stop-timeout'] !== undefined,
    exposedPorts: l('expose').map((e) => (e.includes('/') ? e : `${e}/tcp`)),
    mounts,
    portBindings: l('publish').flatMap(parsePublish),
    publishAllPorts: Boolean(flags['publish-all']),
    networkMode: s('network') || s('net') || 'bridge',
    ipv4Address: s('ip'),
    dns: l('dns'),
    dnsSearch: l('dns-search'),
    dnsOptions: l('dns-option'),
    extraHosts: l('add-host'),
    resources: {
      memory: s('memory') ? parseBytes(s('memory'), '-m, --memory') : 0n,
      memorySwap: memorySwap === '-1' ? -1n : memorySwap ? parseBytes(memorySwap, '--memory-swap') : 0n,
      memoryReservation: s('memory-reservation') ? parseBytes(s('memory-reservation'), '--memory-reservation') : 0n,
      nanoCpus: cpus ? BigInt(Math.round(Number(cpus) * 1e9)) : 0n,
      cpuShares: BigInt((flags['cpu-shares'] as number | undefined) ?? 0),
      cpusetCpus: s('cpuset-cpus'),
      pidsLimit: BigInt((flags['pids-limit'] as number | undefined) ?? 0),
    },
    capAdd: l('cap-add'),
    capDrop: l('cap-drop'),
    privileged: Boolean(flags.privileged),
    securityOpt,
    readOnlyRootfs: Boolean(flags['read-only']),
    tmpfs,
    usernsMode: userns,
    restartPolicy: restart,
    autoRemove: Boolean(flags.rm),
    init: Boolean(flags.init),
    logOptions: keyValues(l('log-opt'), '--log-opt'),
    ulimits,
    shmSize: s('shm-size') ? parseBytes(s('shm-size'), '--shm-size') : 0n,
    networkAliases: l('network-alias'),
  });
  return { name: s('name'), config };
}
