/** Checks a runtime spec before anything is created from it: every problem, one line each. */
import { invalidArgument } from '@ctr/common/errors';
import { CAPABILITIES } from './capabilities.js';
import type { Spec } from './spec.js';

const NAMESPACES = new Set(['pid', 'network', 'mount', 'ipc', 'uts', 'user', 'cgroup', 'time']);
const RLIMITS = new Set([
  'RLIMIT_AS',
  'RLIMIT_CORE',
  'RLIMIT_CPU',
  'RLIMIT_DATA',
  'RLIMIT_FSIZE',
  'RLIMIT_LOCKS',
  'RLIMIT_MEMLOCK',
  'RLIMIT_MSGQUEUE',
  'RLIMIT_NICE',
  'RLIMIT_NOFILE',
  'RLIMIT_NPROC',
  'RLIMIT_RSS',
  'RLIMIT_RTPRIO',
  'RLIMIT_RTTIME',
  'RLIMIT_SIGPENDING',
  'RLIMIT_STACK',
]);
const SECCOMP_ACTIONS = new Set([
  'SCMP_ACT_KILL',
  'SCMP_ACT_KILL_PROCESS',
  'SCMP_ACT_KILL_THREAD',
  'SCMP_ACT_TRAP',
  'SCMP_ACT_ERRNO',
  'SCMP_ACT_TRACE',
  'SCMP_ACT_ALLOW',
  'SCMP_ACT_LOG',
]);

export function specProblems(spec: Spec): string[] {
  const problems: string[] = [];
  const say = (m: string) => problems.push(m);
  if (!spec.ociVersion) say('ociVersion is required');
  if (!spec.root?.path) say('root.path is required');
  const p = spec.process;
  if (!p) say('process is required');
  else {
    if (!p.args?.length) say('process.args must name a command');
    if (!p.cwd?.startsWith('/')) say(`process.cwd must be absolute: ${JSON.stringify(p.cwd)}`);
    if (!Number.isInteger(p.user?.uid) || !Number.isInteger(p.user?.gid)) say('process.user needs integer uid and gid');
    for (const set of ['bounding', 'effective', 'inheritable', 'permitted', 'ambient'] as const) {
      for (const c of p.capabilities?.[set] ?? []) {
        if (!(CAPABILITIES as readonly string[]).includes(c))
          say(`process.capabilities.${set}: unknown capability ${c}`);
      }
    }
    const seen = new Set<string>();
    for (const r of p.rlimits ?? []) {
      if (!RLIMITS.has(r.type)) say(`process.rlimits: unknown type ${r.type}`);
      if (seen.has(r.type)) say(`process.rlimits: ${r.type} given twice`);
      seen.add(r.type);
      if (r.soft > r.hard) say(`process.rlimits: ${r.type} soft limit above the hard limit`);
    }
    for (const e of p.env ?? []) if (!e.includes('=')) say(`process.env: ${JSON.stringify(e)} is not KEY=VALUE`);
  }
  for (const m of spec.mounts ?? []) {
    if (!m.destination?.startsWith('/')) say(`mounts: destination must be absolute: ${JSON.stringify(m.destination)}`);
    if (m.destination?.split('/').includes('..')) say(`mounts: destination must not contain "..": ${m.destination}`);
  }
  const types = new Set<string>();
  for (const ns of spec.linux?.namespaces ?? []) {
    if (!NAMESPACES.has(ns.type)) say(`linux.namespaces: unknown type ${ns.type}`);
    if (types.has(ns.type)) say(`linux.namespaces: ${ns.type} given twice`);
    types.add(ns.type);
    if (ns.path !== undefined && !ns.path.startsWith('/')) say(`linux.namespaces: ${ns.type} path must be absolute`);
  }
  if ((spec.linux?.uidMappings?.length || spec.linux?.gidMappings?.length) && !types.has('user')) {
    say('linux.uidMappings need a user namespace');
  }
  if (spec.hostname && !types.has('uts')) say('hostname needs a uts namespace');
  const sc = spec.linux?.seccomp;
  if (sc) {
    if (!SECCOMP_ACTIONS.has(sc.defaultAction)) say(`linux.seccomp.defaultAction: unknown action ${sc.defaultAction}`);
    for (const s of sc.syscalls ?? [])
      if (!SECCOMP_ACTIONS.has(s.action)) say(`linux.seccomp.syscalls: unknown action ${s.action}`);
  }
  return problems;
}

/** Throws InvalidArgument naming the first problem (and how many more there are). */
export function validateSpec(spec: Spec): Spec {
  const problems = specProblems(spec);
  if (problems.length) {
    throw invalidArgument(
      `invalid runtime spec: ${problems[0]}${problems.length > 1 ? ` (and ${problems.length - 1} more)` : ''}`,
    );
  }
  return spec;
}
