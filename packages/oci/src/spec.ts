/**
 * The OCI runtime spec (opencontainers/runtime-spec config.md and
 * config-linux.md), the parts ctr reads. Field names are the spec's own, so
 * a bundle's config.json parses straight into these types.
 */

export interface Spec {
  ociVersion: string;
  process?: Process;
  root?: { path: string; readonly?: boolean };
  hostname?: string;
  domainname?: string;
  mounts?: Mount[];
  annotations?: Record<string, string>;
  linux?: Linux;
}

export interface Process {
  terminal?: boolean;
  consoleSize?: { height: number; width: number };
  user: User;
  args?: string[];
  env?: string[];
  cwd: string;
  capabilities?: Capabilities;
  rlimits?: Rlimit[];
  noNewPrivileges?: boolean;
  oomScoreAdj?: number;
  apparmorProfile?: string;
  selinuxLabel?: string;
}

export interface User {
  uid: number;
  gid: number;
  umask?: number;
  additionalGids?: number[];
  username?: string;
}

export interface Capabilities {
  bounding?: string[];
  effective?: string[];
  inheritable?: string[];
  permitted?: string[];
  ambient?: string[];
}

export interface Rlimit {
  type: string;
  soft: number;
  hard: number;
}

export interface Mount {
  destination: string;
  type?: string;
  source?: string;
  options?: string[];
}

export type NamespaceType = 'pid' | 'network' | 'mount' | 'ipc' | 'uts' | 'user' | 'cgroup' | 'time';

export interface Namespace {
  type: NamespaceType;
  path?: string;
}

export interface IdMapping {
  containerID: number;
  hostID: number;
  size: number;
}

export interface Device {
  type: 'c' | 'b' | 'u' | 'p';
  path: string;
  major?: number;
  minor?: number;
  fileMode?: number;
  uid?: number;
  gid?: number;
}

export interface DeviceCgroup {
  allow: boolean;
  type?: string;
  major?: number;
  minor?: number;
  access?: string;
}

export interface Resources {
  devices?: DeviceCgroup[];
  memory?: {
    limit?: number;
    reservation?: number;
    swap?: number;
    kernel?: number;
    swappiness?: number;
    disableOOMKiller?: boolean;
  };
  cpu?: {
    shares?: number;
    quota?: number;
    period?: number;
    realtimeRuntime?: number;
    realtimePeriod?: number;
    cpus?: string;
    mems?: string;
    idle?: number;
  };
  pids?: { limit: number };
  blockIO?: { weight?: number };
  unified?: Record<string, string>;
}

export interface SeccompArg {
  index: number;
  value: number;
  valueTwo?: number;
  op:
    | 'SCMP_CMP_NE'
    | 'SCMP_CMP_LT'
    | 'SCMP_CMP_LE'
    | 'SCMP_CMP_EQ'
    | 'SCMP_CMP_GE'
    | 'SCMP_CMP_GT'
    | 'SCMP_CMP_MASKED_EQ';
}

export interface SeccompSyscall {
  names: string[];
  action: string;
  errnoRet?: number;
  args?: SeccompArg[];
}

export interface Seccomp {
  defaultAction: string;
  defaultErrnoRet?: number;
  architectures?: string[];
  flags?: string[];
  syscalls?: SeccompSyscall[];
}

export interface Linux {
  namespaces?: Namespace[];
  uidMappings?: IdMapping[];
  gidMappings?: IdMapping[];
  devices?: Device[];
  cgroupsPath?: string;
  resources?: Resources;
  rootfsPropagation?: 'private' | 'rprivate' | 'slave' | 'rslave' | 'shared' | 'rshared' | 'unbindable' | 'runbindable';
  seccomp?: Seccomp;
  sysctl?: Record<string, string>;
  maskedPaths?: string[];
  readonlyPaths?: string[];
}
