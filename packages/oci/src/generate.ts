/**
 * From an image's config and the options of a `run` to the OCI runtime spec a
 * shim runs: what docker's daemon/oci_linux.go does, with docker's rules for
 * each flag (entrypoint and cmd, env merge, user and groups from the image's
 * /etc/passwd and /etc/group, --privileged, --cap-add/--cap-drop, --read-only,
 * --security-opt, resource limits, ulimits, sysctls, tmpfs, mounts, the
 * network namespace prepared by the network-service).
 */
import { CAPABILITIES, DEFAULT_CAPABILITIES, adjustCapabilities } from './capabilities.js';
import { DEFAULT_MASKED_PATHS, DEFAULT_PATH, DEFAULT_READONLY_PATHS, defaultMounts } from './defaults.js';
import { type DockerSeccompProfile, defaultSeccomp, fromDockerProfile } from './seccomp.js';
import type { Mount, Namespace, Resources, Rlimit, Spec } from './spec.js';

/** The parts of an OCI image config (`config` in the image's config blob) a run uses. */
export interface ImageConfig {
  User?: string;
  Env?: string[];
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
  StopSignal?: string;
  Labels?: Record<string, string>;
}

export interface Ulimit {
  name: string;
  soft: number;
  hard: number;
}

export interface RunOptions {
  id: string;
  /** The rootfs, absolute or relative to the bundle. */
  rootfs: string;
  /** docker run's arguments after the image: they replace the image's Cmd. */
  args?: string[];
  /** --entrypoint: replaces the image's Entrypoint (and drops its Cmd); '' clears it. */
  entrypoint?: string;
  env?: string[];
  user?: string;
  workdir?: string;
  hostname?: string;
  domainname?: string;
  tty?: boolean;
  privileged?: boolean;
  capAdd?: string[];
  capDrop?: string[];
  readOnly?: boolean;
  /** docker's --security-opt values: seccomp=unconfined|<profile JSON>, no-new-privileges[=true|false]. */
  securityOpt?: string[];
  /** A seccomp profile file's content, for seccomp=<file> (the caller reads the file). */
  seccompProfile?: DockerSeccompProfile;
  memory?: number;
  memorySwap?: number;
  memoryReservation?: number;
  cpus?: number;
  cpuShares?: number;
  cpusetCpus?: string;
  cpusetMems?: string;
  pidsLimit?: number;
  ulimits?: Ulimit[];
  sysctls?: Record<string, string>;
  /** --tmpfs /path[:options] */
  tmpfs?: Record<string, string>;
  shmSize?: number;
  /** Binds, volumes and the network-service's resolv.conf/hosts/hostname files. */
  mounts?: Mount[];
  /** A path to join (the network-service's netns), 'host', or undefined for a new one. */
  netns?: string;
  /** Join another container's namespaces of these types (container:<id> modes), by path. */
  joinNamespaces?: Partial<Record<Namespace['type'], string>>;
  cgroupsPath?: string;
  oomScoreAdj?: number;
  /** uid/gid lookups in the image (its /etc/passwd and /etc/group). */
  users?: UserDb;
  /** The engine's own hard limit of open files: the default nofile is not set above it. */
  nofileCeiling?: number;
}

export interface PasswdEntry {
  name: string;
  uid: number;
  gid: number;
  home: string;
}
export interface GroupEntry {
  name: string;
  gid: number;
  members: string[];
}
export interface UserDb {
  passwd: PasswdEntry[];
  group: GroupEntry[];
}

/** Parses /etc/passwd and /etc/group texts (either may be empty). */
export function parseUserDb(passwd: string, group: string): UserDb {
  const rows = (text: string) =>
    text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split(':'));
  return {
    passwd: rows(passwd)
      .filter((r) => r.length >= 7)
      .map((r) => ({ name: r[0], uid: Number(r[2]), gid: Number(r[3]), home: r[5] })),
    group: rows(group)
      .filter((r) => r.length >= 4)
      .map((r) => ({ name: r[0], gid: Number(r[2]), members: r[3] ? r[3].split(',') : [] })),
  };
}

const isNumber = (s: string) => /^\d+$/.test(s);

/** docker's user rules: "name", "uid", "name:group", "uid:gid"; names must exist in the image. */
export function resolveUser(
  user: string | undefined,
  db: UserDb = { passwd: [], group: [] },
): { uid: number; gid: number; additionalGids: number[]; home: string } {
  const [u = '', g] = (user || '').split(':');
  let uid = 0;
  let gid = 0;
  let home = '/';
  let name: string | undefined;
  if (u) {
    const entry = isNumber(u) ? db.passwd.find((p) => p.uid === Number(u)) : db.passwd.find((p) => p.name === u);
    if (!entry && !isNumber(u)) throw new Error(`unable to find user ${u}: no matching entries in passwd file`);
    uid = entry?.uid ?? Number(u);
    gid = entry?.gid ?? 0;
    home = entry?.home ?? '/';
    name = entry?.name;
  } else {
    const root = db.passwd.find((p) => p.uid === 0);
    home = root?.home ?? '/root';
    name = root?.name ?? 'root';
  }
  if (g !== undefined && g !== '') {
    const entry = isNumber(g) ? db.group.find((x) => x.gid === Number(g)) : db.group.find((x) => x.name === g);
    if (!entry && !isNumber(g)) throw new Error(`unable to find group ${g}: no matching entries in group file`);
    gid = entry?.gid ?? Number(g);
  }
  const additionalGids = name
    ? db.group.filter((x) => x.members.includes(name) && x.gid !== gid).map((x) => x.gid)
    : [];
  return { uid, gid, additionalGids: [...new Set(additionalGids)], home };
}

/** docker's command: entrypoint + cmd, with the run's args replacing cmd and --entrypoint replacing both. */
export function commandOf(image: ImageConfig, opts: Pick<RunOptions, 'args' | 'entrypoint'>): string[] {
  let entrypoint = image.Entrypoint ?? [];
  let cmd = image.Cmd ?? [];
  if (opts.entrypoint !== undefined) {
    entrypoint = opts.entrypoint ? [opts.entrypoint] : [];
    cmd = [];
  }
  if (opts.args?.length) cmd = opts.args;
  return [...entrypoint, ...cmd];
}

/** Image env, then the run's; a later KEY wins; PATH and HOME as docker sets them. */
export function mergeEnv(image: string[] = [], run: string[] = [], extra: Record<string, string> = {}): string[] {
  const env = new Map<string, string>();
  for (const e of [...image, ...run]) {
    const i = e.indexOf('=');
    if (i > 0) env.set(e.slice(0, i), e);
    else if (i < 0 && process.env[e] !== undefined) env.set(e, `${e}=${process.env[e]}`);
  }
  for (const [k, v] of Object.entries(extra)) if (!env.has(k)) env.set(k, `${k}=${v}`);
  return [...env.values()];
}

const RLIMIT_NAMES = new Set([
  'as',
  'core',
  'cpu',
  'data',
  'fsize',
  'locks',
  'memlock',
  'msgqueue',
  'nice',
  'nofile',
  'nproc',
  'rss',
  'rtprio',
  'rttime',
  'sigpending',
  'stack',
]);

function rlimits(ulimits: Ulimit[] = [], ceiling = 1048576): Rlimit[] {
  // docker's daemon default: nofile 1048576 unless the run says otherwise; never above what the engine
  // itself may raise to (without CAP_SYS_RESOURCE a hard limit cannot go up).
  const nofile = Math.min(1048576, ceiling);
  const byName = new Map<string, Rlimit>([['nofile', { type: 'RLIMIT_NOFILE', soft: nofile, hard: nofile }]]);
  for (const u of ulimits) {
    if (!RLIMIT_NAMES.has(u.name)) throw new Error(`invalid ulimit type: ${u.name}`);
    if (u.soft > u.hard) throw new Error(`ulimit ${u.name}: soft limit ${u.soft} is above the hard limit ${u.hard}`);
    byName.set(u.name, { type: `RLIMIT_${u.name.toUpperCase()}`, soft: u.soft, hard: u.hard });
  }
  return [...byName.values()];
}

function resources(o: RunOptions): Resources {
  const r: Resources = { devices: [{ allow: false, access: 'rwm' }] };
  if (o.privileged) r.devices = [{ allow: true, access: 'rwm' }];
  if (o.memory || o.memorySwap || o.memoryReservation) {
    if (o.memory && o.memory < 6 * 1024 * 1024) throw new Error('minimum memory limit allowed is 6MB');
    // docker: --memory alone gives as much swap again (memory-swap = 2 × memory).
    const swap = o.memorySwap ?? (o.memory ? o.memory * 2 : undefined);
    if (o.memory && swap !== undefined && swap !== -1 && swap < o.memory) {
      throw new Error('minimum memoryswap limit should be larger than memory limit');
    }
    r.memory = { limit: o.memory, swap, reservation: o.memoryReservation };
  }
  if (o.cpus || o.cpuShares || o.cpusetCpus || o.cpusetMems) {
    r.cpu = {};
    if (o.cpus) {
      if (o.cpus < 0.01) throw new Error('range of CPUs is from 0.01 to the number of CPUs');
      r.cpu.period = 100_000;
      r.cpu.quota = Math.round(o.cpus * 100_000);
    }
    if (o.cpuShares) r.cpu.shares = o.cpuShares;
    if (o.cpusetCpus) r.cpu.cpus = o.cpusetCpus;
    if (o.cpusetMems) r.cpu.mems = o.cpusetMems;
  }
  if (o.pidsLimit && o.pidsLimit > 0) r.pids = { limit: o.pidsLimit };
  return r;
}

function securityOptions(opts: string[] = []): { seccomp?: 'unconfined' | 'profile'; noNewPrivileges: boolean } {
  let seccomp: 'unconfined' | 'profile' | undefined;
  let noNewPrivileges = false;
  for (const o of opts) {
    const [key, value = ''] = o.includes('=') ? [o.slice(0, o.indexOf('=')), o.slice(o.indexOf('=') + 1)] : [o, ''];
    if (key === 'seccomp') seccomp = value === 'unconfined' ? 'unconfined' : 'profile';
    else if (key === 'no-new-privileges') noNewPrivileges = value === '' || value === 'true';
    else if (key === 'apparmor' || key === 'label') continue;
    else throw new Error(`invalid --security-opt: ${o}`);
  }
  return { seccomp, noNewPrivileges };
}

/** The runtime spec for a container. Throws an Error with docker's wording for a bad option. */
export function generateSpec(image: ImageConfig, o: RunOptions): Spec {
  const args = commandOf(image, o);
  if (!args.length) throw new Error('no command specified');
  const user = resolveUser(o.user ?? image.User, o.users);
  const caps = o.privileged ? [...CAPABILITIES] : adjustCapabilities(DEFAULT_CAPABILITIES, o.capAdd, o.capDrop);
  const security = securityOptions(o.securityOpt);
  const hostname = o.hostname ?? o.id.slice(0, 12);
  const cwd = o.workdir || image.WorkingDir || '/';
  if (!cwd.startsWith('/'))
    throw new Error(`the working directory '${cwd}' is invalid, it needs to be an absolute path`);
  if (security.seccomp === 'profile' && !o.seccompProfile) throw new Error('seccomp profile: the file was not read');

  const mounts: Mount[] = defaultMounts();
  if (o.privileged) {
    // --privileged: /sys writable; cgroups stay read-only as docker mounts them.
    const sys = mounts.find((m) => m.destination === '/sys');
    if (sys) sys.options = sys.options?.filter((x) => x !== 'ro').concat('rw');
  }
  const shm = mounts.find((m) => m.destination === '/dev/shm');
  if (shm && o.shmSize) shm.options = shm.options?.map((x) => (x.startsWith('size=') ? `size=${o.shmSize}` : x));
  for (const [dest, options] of Object.entries(o.tmpfs ?? {})) {
    const opts = options ? options.split(',') : [];
    mounts.push({
      destination: dest,
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'nodev', 'noexec', ...opts],
    });
  }
  const taken = new Set<string>();
  for (const m of o.mounts ?? []) {
    if (!m.destination.startsWith('/')) throw new Error(`invalid mount destination ${m.destination}: not absolute`);
    if (taken.has(m.destination)) throw new Error(`duplicate mount point: ${m.destination}`);
    taken.add(m.destination);
    mounts.push(m);
  }

  const namespaces: Namespace[] = [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }];
  if (o.netns !== 'host') namespaces.push(o.netns ? { type: 'network', path: o.netns } : { type: 'network' });
  namespaces.push({ type: 'cgroup' });
  for (const [type, path] of Object.entries(o.joinNamespaces ?? {})) {
    const ns = namespaces.find((n) => n.type === type);
    if (ns) ns.path = path;
    else namespaces.push({ type: type as Namespace['type'], path });
  }

  const spec: Spec = {
    ociVersion: '1.1.0',
    process: {
      terminal: !!o.tty,
      user: {
        uid: user.uid,
        gid: user.gid,
        additionalGids: user.additionalGids.length ? user.additionalGids : undefined,
      },
      args,
      env: mergeEnv(image.Env, o.env, {
        PATH: DEFAULT_PATH,
        HOSTNAME: hostname,
        HOME: user.home,
        ...(o.tty ? { TERM: 'xterm' } : {}),
      }),
      cwd,
      capabilities: {
        bounding: caps,
        effective: caps,
        permitted: caps,
        inheritable: [],
        ambient: [],
      },
      rlimits: rlimits(o.ulimits, o.nofileCeiling),
      noNewPrivileges: security.noNewPrivileges,
      oomScoreAdj: o.oomScoreAdj,
    },
    root: { path: o.rootfs, readonly: !!o.readOnly },
    hostname,
    domainname: o.domainname,
    mounts,
    linux: {
      namespaces,
      cgroupsPath: o.cgroupsPath,
      resources: resources(o),
      sysctl: o.sysctls,
      maskedPaths: o.privileged ? [] : [...DEFAULT_MASKED_PATHS],
      readonlyPaths: o.privileged ? [] : [...DEFAULT_READONLY_PATHS],
      devices: [],
    },
  };
  if (!o.privileged && security.seccomp !== 'unconfined') {
    if (spec.linux) {
      spec.linux.seccomp =
        security.seccomp === 'profile' && o.seccompProfile
          ? fromDockerProfile(o.seccompProfile, caps)
          : defaultSeccomp(caps);
    }
  }
  return spec;
}
