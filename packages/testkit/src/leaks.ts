/**
 * The leak check every integration suite runs at teardown: nothing that
 * carries the instance's names may be left on the host — no mount, link,
 * netns, iptables chain or rule, cgroup, or process.
 */
import { readdir, readFile } from 'node:fs/promises';
import { bridgeName, cgroupParent, chainPrefix, linkPrefix } from '@ctr/common/names';
import { readMountInfo } from '@ctr/sys/mountinfo';
import { execText, signal, sleep } from './util.js';

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

/**
 * The last resort after a failed leak check (which still fails the test):
 * what carries the instance's names is removed by hand, so a bug in the
 * engine's teardown does not stay on a shared host. Only this instance's
 * objects: its processes by pid, its mounts, links, chains and cgroups.
 */
export async function sweepLeaks(scope: LeakScope): Promise<void> {
  for (const p of await processes(scope)) {
    signal(Number(p.split(' ')[1].replace(':', '')), 'SIGKILL');
  }
  const tag = `ctr-${scope.instance}`;
  const points = (await readMountInfo())
    .map((m) => m.mountPoint)
    .filter((mp) => scope.dirs.some((d) => mp === d || mp.startsWith(`${d}/`)) || mp.includes(tag))
    .sort((a, b) => b.length - a.length);
  for (const mp of points) await execText('umount', ['-l', mp]);
  for (const l of await links(scope)) await execText('ip', ['link', 'del', l.slice('link '.length)]);
  const prefix = chainPrefix(scope.instance);
  for (const [save, tool] of [
    ['iptables-save', 'iptables'],
    ['iptables-legacy-save', 'iptables-legacy'],
    ['ip6tables-save', 'ip6tables'],
  ]) {
    let table = '';
    const chains: Array<[string, string]> = [];
    for (const line of (await execText(save, [])).split('\n')) {
      if (line.startsWith('*')) table = line.slice(1);
      else if (line.startsWith(`:${prefix}`)) chains.push([table, line.slice(1).split(' ')[0]]);
      else if (line.startsWith('-A') && line.includes(prefix) && !line.startsWith(`-A ${prefix}`))
        await execText('sh', ['-c', `${tool} -t ${table} ${line.replace(/^-A/, '-D')}`]);
    }
    for (const [t, chain] of chains) await execText(tool, ['-t', t, '-F', chain]);
    for (const [t, chain] of chains) await execText(tool, ['-t', t, '-X', chain]);
  }
  const rmTree = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => []))
      if (e.isDirectory()) await rmTree(`${dir}/${e.name}`);
    await execText('rmdir', [dir]);
  };
  // A container whose shim was killed above runs on (its processes carry none of the instance's names):
  // what is in the instance's cgroups is its by construction, and a cgroup with tasks cannot go.
  const tasks = async (dir: string): Promise<number[]> => {
    const own = (await readFile(`${dir}/cgroup.procs`, 'utf8').catch(() => '')).split('\n').filter(Boolean).map(Number);
    const below = await Promise.all(
      (await readdir(dir, { withFileTypes: true }).catch(() => []))
        .filter((e) => e.isDirectory())
        .map((e) => tasks(`${dir}/${e.name}`)),
    );
    return [...own, ...below.flat()];
  };
  const dirs = (await cgroups(scope)).map((c) => c.slice('cgroup '.length));
  for (let i = 0; i < 20; i++) {
    const left = new Set((await Promise.all(dirs.map(tasks))).flat());
    if (!left.size) break;
    for (const pid of left) signal(pid, 'SIGKILL');
    await sleep(100);
  }
  for (const dir of dirs) await rmTree(dir);
}
