/**
 * The leak check every integration suite runs at teardown: nothing that
 * carries the instance's names may be left on the host — no mount, link,
 * netns, iptables chain or rule, cgroup, or process.
 */
import { readdir, readFile } from 'node:fs/promises';
import { bridgeName, cgroupParent, chainPrefix, linkPrefix } from '@ctr/common/names';
import { readMountInfo } from '@ctr/sys/mountinfo';
import { execText } from './util.js';

export interface LeakScope {
  instance: string;
  /** Directories the engine used (root, state, the test's own dir). */
  dirs: string[];
}

async function mounts(scope: LeakScope): Promise<string[]> {
  const tag = `ctr-${scope.instance}`;
  return (await readMountInfo())
    .filter(
      (m) =>
        scope.dirs.some((d) => m.mountPoint === d || m.mountPoint.startsWith(`${d}/`)) || m.mountPoint.includes(tag),
    )
    .map((m) => `mount ${m.fsType} on ${m.mountPoint}`);
}

async function links(scope: LeakScope): Promise<string[]> {
  const names = (await execText('ip', ['-o', 'link', 'show']))
    .split('\n')
    .map((l) => l.split(': ')[1]?.split('@')[0])
    .filter(Boolean) as string[];
  const prefixes = [linkPrefix(scope.instance), bridgeName(scope.instance), `ctr-${scope.instance}`];
  return names.filter((n) => prefixes.some((p) => n.startsWith(p))).map((n) => `link ${n}`);
}

async function netns(scope: LeakScope): Promise<string[]> {
  const list = (await execText('ip', ['netns', 'list'])).split('\n').map((l) => l.split(' ')[0]);
  return list.filter((n) => n.includes(scope.instance)).map((n) => `netns ${n}`);
}

async function iptables(scope: LeakScope): Promise<string[]> {
  const prefix = chainPrefix(scope.instance);
  const found: string[] = [];
  for (const tool of ['iptables-save', 'iptables-legacy-save', 'ip6tables-save']) {
    const text = await execText(tool, []);
    for (const line of text.split('\n')) {
      if (line.startsWith(`:${prefix}`) || (line.startsWith('-A') && line.includes(prefix)))
        found.push(`${tool}: ${line}`);
    }
  }
  return found;
}

async function cgroups(scope: LeakScope): Promise<string[]> {
  const name = cgroupParent(scope.instance);
  const found: string[] = [];
  const roots = ['/sys/fs/cgroup'];
  for (const entry of await readdir('/sys/fs/cgroup').catch(() => [] as string[]))
    roots.push(`/sys/fs/cgroup/${entry}`);
  for (const dir of roots) {
    const entries = await readdir(dir).catch(() => [] as string[]);
    if (entries.includes(name)) found.push(`cgroup ${dir}/${name}`);
  }
  return found;
}

async function processes(scope: LeakScope): Promise<string[]> {
  const found: string[] = [];
  const tag = `ctr-${scope.instance}`;
  for (const pid of await readdir('/proc')) {
    if (!/^\d+$/.test(pid) || Number(pid) === process.pid) continue;
    const cmd = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ').trim();
    if (!cmd) continue;
    if (scope.dirs.some((d) => cmd.includes(d)) || cmd.includes(tag))
      found.push(`process ${pid}: ${cmd.slice(0, 200)}`);
  }
  return found;
}

/** Everything that carries the instance's names on this host. */
export async function findLeaks(scope: LeakScope): Promise<string[]> {
  const all = await Promise.all([mounts, links, netns, iptables, cgroups, processes].map((f) => f(scope)));
  return all.flat();
}

export async function assertNoLeaks(scope: LeakScope): Promise<void> {
  const leaks = await findLeaks(scope);
  if (leaks.length) throw new Error(`instance ${scope.instance} left these behind:\n  ${leaks.join('\n  ')}`);
}
