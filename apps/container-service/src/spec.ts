/**
 * A container's record → the OCI runtime spec its shim runs: the `run`
 * options of the record, its resolved mounts (volumes, binds, the
 * network-service's resolv.conf/hosts/hostname), the network namespace, and
 * the users of the image (read from its layers without following a symlink
 * out of them).
 */
import { closeSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Container } from '@ctr/api/containers/v1/containers';
import type { Mount as RootfsMount } from '@ctr/api/types/v1/types';
import { invalidArgument } from '@ctr/common/errors';
import {
  CAPABILITIES,
  type DockerSeccompProfile,
  generateSpec,
  type ImageConfig,
  type Mount,
  parseUserDb,
  type RunOptions,
  type Spec,
  type UserDb,
} from '@ctr/oci';
import { O, openat2, RESOLVE } from '@ctr/sys/fsat';

export interface NameFiles {
  resolvConf: string;
  hosts: string;
  hostname: string;
}

/** The layer directories of a snapshot's mounts, top first (upper, then lowers). */
export function layerDirs(mounts: RootfsMount[]): string[] {
  const dirs: string[] = [];
  for (const m of mounts) {
    if (m.type === 'bind') dirs.push(m.source);
    if (m.type !== 'overlay') continue;
    const opt = (k: string) => m.options.find((o) => o.startsWith(`${k}=`))?.slice(k.length + 1);
    const upper = opt('upperdir');
    if (upper) dirs.push(upper);
    dirs.push(...(opt('lowerdir')?.split(':') ?? []));
  }
  return dirs;
}

/** A file of the image as the container sees it (the topmost layer that has it); '' when none does. */
export function readImageFile(dirs: string[], path: string): string {
  for (const dir of dirs) {
    let dfd = -1;
    let fd = -1;
    try {
      dfd = openat2(-100, dir, O.RDONLY | O.DIRECTORY, 0, 0);
      // IN_ROOT: an absolute symlink in the image resolves inside the layer, never to the host's file.
      fd = openat2(dfd, path, O.RDONLY, 0, RESOLVE.IN_ROOT | RESOLVE.NO_MAGICLINKS);
      return readFileSync(fd, 'utf8');
    } catch {
      // Not in this layer.
    } finally {
      if (fd >= 0) closeSync(fd);
      if (dfd >= 0) closeSync(dfd);
    }
  }
  return '';
}

export function imageUsers(dirs: string[]): UserDb {
  return parseUserDb(readImageFile(dirs, 'etc/passwd'), readImageFile(dirs, 'etc/group'));
}

/** This process's hard limit of open files (a container's default cannot be above what we may set). */
function nofileCeiling(): number | undefined {
  try {
    const line = readFileSync('/proc/self/limits', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('Max open files'));
    const hard = line?.trim().split(/\s+/)[4];
    return hard && /^\d+$/.test(hard) ? Number(hard) : undefined;
  } catch {
    return undefined;
  }
}
const NOFILE_CEILING = nofileCeiling();

/** The capabilities this host lets us hand on (its bounding set): --privileged and ALL mean these, as docker's do. */
function hostCapabilities(): Set<string> | undefined {
  try {
    const line = readFileSync('/proc/self/status', 'utf8')
      .split('\n')
      .find((l) => l.startsWith('CapBnd:'));
    if (!line) return undefined;
    const bits = BigInt(`0x${line.split(/\s+/)[1]}`);
    return new Set(CAPABILITIES.filter((_, i) => (bits >> BigInt(i)) & 1n));
  } catch {
    return undefined;
  }
}
const HOST_CAPS = hostCapabilities();

const n = (v: bigint | number | undefined) => (v === undefined ? undefined : Number(v));

/** The spec for a start: `netns` is the sandbox's path, 'host', or undefined for a namespace of its own. */
export function containerSpec(
  c: Container,
  image: ImageConfig,
  opts: {
    netns?: string;
    names?: NameFiles;
    users: UserDb;
    initPath?: string;
  },
): Spec {
  const cfg = c.config;
  if (!cfg) throw invalidArgument('the container has no config');
  const r = cfg.resources;
  const mounts: Mount[] = [];
  for (const m of c.mounts) {
    if (m.type === 'tmpfs') {
      mounts.push({
        destination: m.target,
        type: 'tmpfs',
        source: 'tmpfs',
        options: ['nosuid', 'nodev', ...m.options],
      });
      continue;
    }
    mounts.push({
      destination: m.target,
      type: 'bind',
      source: m.hostPath || m.source,
      options: ['rbind', m.readOnly ? 'ro' : 'rw', ...m.options],
    });
  }
  const taken = new Set(mounts.map((m) => m.destination));
  if (opts.names) {
    for (const [dest, source] of [
      ['/etc/resolv.conf', opts.names.resolvConf],
      ['/etc/hosts', opts.names.hosts],
      ['/etc/hostname', opts.names.hostname],
    ]) {
      if (!taken.has(dest)) mounts.push({ destination: dest, type: 'bind', source, options: ['rbind', 'rw'] });
    }
  }
  let seccompProfile: DockerSeccompProfile | undefined;
  const securityOpt: string[] = [];
  for (const o of cfg.securityOpt) {
    // ctrctl reads a seccomp=FILE and sends its JSON, as docker's CLI does.
    if (o.startsWith('seccomp=') && o.slice(8).trimStart().startsWith('{')) {
      try {
        seccompProfile = JSON.parse(o.slice(8)) as DockerSeccompProfile;
      } catch (err) {
        throw invalidArgument(`seccomp profile: ${(err as Error).message}`);
      }
      securityOpt.push('seccomp=profile.json');
    } else securityOpt.push(o);
  }
  const args = [...(c.path ? [c.path] : []), ...c.args];
  const options: RunOptions = {
    id: c.id,
    rootfs: 'rootfs',
    args: opts.initPath ? [opts.initPath, '--', ...args] : args,
    entrypoint: '',
    env: cfg.env,
    user: cfg.user || undefined,
    workdir: cfg.workingDir || undefined,
    hostname: cfg.hostname || undefined,
    domainname: cfg.domainname || undefined,
    tty: cfg.tty,
    privileged: cfg.privileged,
    capAdd: cfg.capAdd,
    capDrop: cfg.capDrop,
    readOnly: cfg.readOnlyRootfs,
    securityOpt,
    seccompProfile,
    memory: n(r?.memory) || undefined,
    memorySwap: n(r?.memorySwap) || undefined,
    memoryReservation: n(r?.memoryReservation) || undefined,
    cpus: r?.nanoCpus ? Number(r.nanoCpus) / 1e9 : undefined,
    cpuShares: n(r?.cpuShares) || undefined,
    cpusetCpus: r?.cpusetCpus || undefined,
    pidsLimit: n(r?.pidsLimit) || undefined,
    ulimits: cfg.ulimits.map((u) => ({ name: u.name, soft: Number(u.soft), hard: Number(u.hard) })),
    tmpfs: cfg.tmpfs,
    shmSize: n(cfg.shmSize) || undefined,
    mounts,
    netns: opts.netns,
    users: opts.users,
    nofileCeiling: NOFILE_CEILING,
  };
  try {
    // The command was resolved at create (entrypoint + cmd); the image's are not applied again.
    const spec = generateSpec({ ...image, Entrypoint: [], Cmd: [] }, options);
    const caps = spec.process?.capabilities;
    if (caps && HOST_CAPS) {
      for (const k of ['bounding', 'effective', 'permitted', 'inheritable', 'ambient'] as const) {
        caps[k] = caps[k]?.filter((c) => HOST_CAPS.has(c));
      }
    }
    return spec;
  } catch (err) {
    throw invalidArgument((err as Error).message);
  }
}

export const bundleConfig = (bundle: string) => join(bundle, 'config.json');
