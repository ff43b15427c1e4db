/**
 * Turns a validated OCI runtime spec into ctr-init's plan. All decisions are
 * made here (mount flags, default devices, the cgroup mount of this host,
 * capability masks, the seccomp rules); ctr-init only carries them out.
 */
import {
  capabilityMask,
  DEFAULT_CAPABILITIES,
  defaultDevices,
  defaultSeccomp,
  defaultSpec,
  type Mount,
  type Seccomp,
  type Spec,
} from '@ctr/oci';
import { MS, PROPAGATION, parseMountOptions } from '@ctr/sys';
import { CLONE, PlanTag, PlanWriter } from './protocol.js';

const NAMESPACE_FLAGS: Record<string, number> = {
  pid: CLONE.NEWPID,
  network: CLONE.NEWNET,
  mount: CLONE.NEWNS,
  ipc: CLONE.NEWIPC,
  uts: CLONE.NEWUTS,
  user: CLONE.NEWUSER,
  cgroup: CLONE.NEWCGROUP,
  time: CLONE.NEWTIME,
};

const RLIMITS = [
  'RLIMIT_CPU',
  'RLIMIT_FSIZE',
  'RLIMIT_DATA',
  'RLIMIT_STACK',
  'RLIMIT_CORE',
  'RLIMIT_RSS',
  'RLIMIT_NPROC',
  'RLIMIT_NOFILE',
  'RLIMIT_MEMLOCK',
  'RLIMIT_AS',
  'RLIMIT_LOCKS',
  'RLIMIT_SIGPENDING',
  'RLIMIT_MSGQUEUE',
  'RLIMIT_NICE',
  'RLIMIT_RTPRIO',
  'RLIMIT_RTTIME',
];

/** libseccomp's action values (seccomp.h). */
export function seccompAction(action: string, errnoRet?: number): number {
  switch (action) {
    case 'SCMP_ACT_KILL':
    case 'SCMP_ACT_KILL_THREAD':
      return 0;
    case 'SCMP_ACT_KILL_PROCESS':
      return 0x80000000;
    case 'SCMP_ACT_TRAP':
      return 0x00030000;
    case 'SCMP_ACT_ERRNO':
      return (0x00050000 | ((errnoRet ?? 1) & 0xffff)) >>> 0;
    case 'SCMP_ACT_TRACE':
      return (0x7ff00000 | ((errnoRet ?? 1) & 0xffff)) >>> 0;
    case 'SCMP_ACT_LOG':
      return 0x7ffc0000;
    case 'SCMP_ACT_ALLOW':
      return 0x7fff0000;
    default:
      throw new Error(`unknown seccomp action ${action}`);
  }
}
const SECCOMP_OPS: Record<string, number> = {
  SCMP_CMP_NE: 1,
  SCMP_CMP_LT: 2,
  SCMP_CMP_LE: 3,
  SCMP_CMP_EQ: 4,
  SCMP_CMP_GE: 5,
  SCMP_CMP_GT: 6,
  SCMP_CMP_MASKED_EQ: 7,
};
const SECCOMP_ARCHES: Record<string, string> = {
  SCMP_ARCH_X86_64: 'x86_64',
  SCMP_ARCH_X86: 'x86',
  SCMP_ARCH_X32: 'x32',
  SCMP_ARCH_AARCH64: 'aarch64',
  SCMP_ARCH_ARM: 'arm',
};

/** What the host's cgroup layout means for a container's /sys/fs/cgroup. */
export interface CgroupMountInfo {
  /** 'v2' mounts cgroup2; otherwise a tmpfs with one mount per v1 controller. */
  mode: 'v2' | 'v1';
  /** v1 hierarchies by their mount name under /sys/fs/cgroup, with their mount options. */
  v1Controllers: { name: string; options: string }[];
}

function cgroupMounts(m: Mount, host: CgroupMountInfo): Mount[] {
  const base = (m.options ?? []).filter((o) => o !== 'ro' && o !== 'rw');
  const ro = (m.options ?? []).includes('ro');
  if (host.mode === 'v2')
    return [{ destination: m.destination, type: 'cgroup2', source: 'cgroup', options: m.options }];
  const out: Mount[] = [
    { destination: m.destination, type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'noexec', 'nodev', 'mode=755'] },
  ];
  for (const c of host.v1Controllers) {
    out.push({
      destination: `${m.destination}/${c.name}`,
      type: c.name === 'unified' ? 'cgroup2' : 'cgroup',
      source: 'cgroup',
      options: [...base, ...(ro ? ['ro'] : []), ...(c.name === 'unified' ? [] : [c.options])],
    });
  }
  return out;
}

const STANDARD_LINKS: [target: string, link: string][] = [
  ['/proc/self/fd', '/dev/fd'],
  ['/proc/self/fd/0', '/dev/stdin'],
  ['/proc/self/fd/1', '/dev/stdout'],
  ['/proc/self/fd/2', '/dev/stderr'],
  ['pts/ptmx', '/dev/ptmx'],
];

export interface PlanOptions {
  /** The host's cgroup layout (for a `cgroup` mount). */
  cgroups: CgroupMountInfo;
  /** Join, instead of create, these namespaces (exec): type → path. */
  joinAll?: Record<string, string>;
  /** The spec's seccomp filter compiled already (seccompRules, `ctr-init seccomp-bpf`): loaded as it is. */
  seccompBpf?: Buffer;
}

function writeSeccompRules(w: PlanWriter, sc: Seccomp) {
  w.record(PlanTag.SECCOMP_DEFAULT, { u32: seccompAction(sc.defaultAction, sc.defaultErrnoRet) });
  for (const a of sc.architectures ?? []) if (SECCOMP_ARCHES[a]) w.record(PlanTag.SECCOMP_ARCH, SECCOMP_ARCHES[a]);
  for (const s of sc.syscalls ?? []) {
    const action = seccompAction(s.action, s.errnoRet);
    for (const name of s.names) {
      const args = (s.args ?? []).flatMap((a) => [
        { u32: a.index },
        { u32: SECCOMP_OPS[a.op] },
        { u64: a.value },
        { u64: a.valueTwo ?? 0 },
      ]);
      w.record(PlanTag.SECCOMP_RULE, { u32: action }, { u32: s.args?.length ?? 0 }, ...args, name);
    }
  }
}

/** The spec's seccomp records alone (what `ctr-init seccomp-bpf` compiles), or undefined without a profile. */
export function seccompRules(spec: Spec): Buffer | undefined {
  const sc = spec.linux?.seccomp;
  if (!sc) return undefined;
  const w = new PlanWriter();
  writeSeccompRules(w, sc);
  return w.finish();
}

/** The plan for `ctr-init create` from a spec, or `ctr-init exec` when options.joinAll is given. */
export function planFromSpec(spec: Spec, opts: PlanOptions): Buffer {
  const w = new PlanWriter();
  const p = spec.process;
  if (!p?.args?.length) throw new Error('the spec has no process to run');
  const exec = opts.joinAll !== undefined;

  if (exec) {
    for (const [type, path] of Object.entries(opts.joinAll ?? {})) {
      w.record(PlanTag.JOIN_NS, { u32: NAMESPACE_FLAGS[type] }, path);
    }
  } else {
    let flags = 0;
    for (const ns of spec.linux?.namespaces ?? []) {
      const flag = NAMESPACE_FLAGS[ns.type];
      if (ns.path) w.record(PlanTag.JOIN_NS, { u32: flag }, ns.path);
      else flags |= flag;
    }
    w.record(PlanTag.NAMESPACES, { u32: flags });
    w.record(PlanTag.ROOTFS, spec.root?.path ?? '');
    if (spec.root?.readonly) w.record(PlanTag.ROOTFS_READONLY);
    const prop = spec.linux?.rootfsPropagation;
    if (prop) w.record(PlanTag.ROOTFS_PROPAGATION, { u32: PROPAGATION[prop] | MS.REC });
    for (const m of spec.mounts ?? []) {
      for (const mm of m.type === 'cgroup' ? cgroupMounts(m, opts.cgroups) : [m]) {
        const { flags: mflags, propagation, data } = parseMountOptions(mm.options);
        w.record(
          PlanTag.MOUNT,
          { u64: mflags },
          { u32: propagation },
          mm.type ?? '',
          mm.source ?? '',
          mm.destination,
          data,
        );
      }
    }
    const devices = new Map(defaultDevices().map((d) => [d.path, d]));
    for (const d of spec.linux?.devices ?? []) devices.set(d.path, d);
    for (const d of devices.values()) {
      w.record(
        PlanTag.DEVICE,
        // 'u' (unbuffered char) is made as a plain char device.
        { u32: (d.type === 'u' ? 'c' : d.type).charCodeAt(0) },
        { u32: d.major ?? 0 },
        { u32: d.minor ?? 0 },
        { u32: d.fileMode ?? 0o666 },
        { u32: d.uid ?? 0 },
        { u32: d.gid ?? 0 },
        d.path,
      );
    }
    for (const [target, link] of STANDARD_LINKS) w.record(PlanTag.SYMLINK, target, link);
    for (const path of spec.linux?.readonlyPaths ?? []) w.record(PlanTag.READONLY_PATH, path);
    for (const path of spec.linux?.maskedPaths ?? []) w.record(PlanTag.MASKED_PATH, path);
    if (spec.hostname) w.record(PlanTag.HOSTNAME, spec.hostname);
    for (const [k, v] of Object.entries(spec.linux?.sysctl ?? {})) w.record(PlanTag.SYSCTL, k, v);
  }

  for (const r of p.rlimits ?? []) {
    w.record(PlanTag.RLIMIT, { u32: RLIMITS.indexOf(r.type) }, { u64: r.soft }, { u64: r.hard });
  }
  if (p.oomScoreAdj !== undefined) w.record(PlanTag.OOM_SCORE_ADJ, { i32: p.oomScoreAdj });
  w.record(PlanTag.UID, { u32: p.user.uid });
  w.record(PlanTag.GID, { u32: p.user.gid });
  for (const g of p.user.additionalGids ?? []) w.record(PlanTag.GROUP, { u32: g });
  const caps = p.capabilities;
  if (caps) {
    w.record(
      PlanTag.CAPS,
      { u64: capabilityMask(caps.bounding) },
      { u64: capabilityMask(caps.effective) },
      { u64: capabilityMask(caps.inheritable) },
      { u64: capabilityMask(caps.permitted) },
      { u64: capabilityMask(caps.ambient) },
    );
  }
  if (p.noNewPrivileges) w.record(PlanTag.NO_NEW_PRIVS);
  if (p.terminal) w.record(PlanTag.TERMINAL);
  if (opts.seccompBpf) w.record(PlanTag.SECCOMP_BPF, opts.seccompBpf);
  else if (spec.linux?.seccomp) writeSeccompRules(w, spec.linux.seccomp);
  for (const a of p.args) w.record(PlanTag.ARG, a);
  for (const e of p.env ?? []) w.record(PlanTag.ENV, e);
  w.record(PlanTag.CWD, p.cwd || '/');
  return w.finish();
}

/**
 * Plans a container that will never run, once, while a warm shim waits for
 * its own: a shim serves one container, so without this the first (and only)
 * plan it makes meets all of this code cold, some 3 ms of a start. (A second
 * rehearsal saved 0.2 ms more, for 1 ms of every shim's CPU.) A shim
 * zygote does it once, before its first fork, for every shim it forks.
 */
export function rehearsePlan(cgroups: CgroupMountInfo): void {
  const spec = defaultSpec('/', ['true']);
  spec.linux = { ...spec.linux, seccomp: defaultSeccomp(DEFAULT_CAPABILITIES) };
  planFromSpec(spec, { cgroups });
}
