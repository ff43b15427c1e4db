import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseMountInfo } from '@ctr/sys/mountinfo';
import { findLeaks, randomInstance, waitFor } from '@ctr/testkit';
import { afterAll, describe, expect, it } from 'vitest';
import { Cgroup, CgroupMovePrimer, detectLayout, hostLayout, parseKeyValues } from './index.js';
import { cpusToQuota, sharesToWeight } from './resources.js';

const line = (id: number, mp: string, fs: string, superOpts: string) =>
  `${id} 1 0:${id} / ${mp} rw - ${fs} ${fs} ${superOpts}`;

describe('layout detection', () => {
  it('recognises unified, legacy and hybrid hosts', () => {
    expect(detectLayout(parseMountInfo(line(1, '/sys/fs/cgroup', 'cgroup2', 'rw'))).mode).toBe('v2');
    const v1 = detectLayout(
      parseMountInfo(
        [
          line(1, '/sys/fs/cgroup/memory', 'cgroup', 'rw,memory'),
          line(2, '/sys/fs/cgroup/cpu,cpuacct', 'cgroup', 'rw,cpu,cpuacct'),
        ].join('\n'),
      ),
    );
    expect(v1).toEqual({
      mode: 'v1',
      v1: { memory: '/sys/fs/cgroup/memory', cpu: '/sys/fs/cgroup/cpu,cpuacct', cpuacct: '/sys/fs/cgroup/cpu,cpuacct' },
    });
    const hybrid = detectLayout(
      parseMountInfo(
        [
          line(1, '/sys/fs/cgroup/memory', 'cgroup', 'rw,memory'),
          line(2, '/sys/fs/cgroup/unified', 'cgroup2', 'rw'),
        ].join('\n'),
      ),
    );
    expect(hybrid.mode).toBe('hybrid');
    expect(hybrid.unified).toBe('/sys/fs/cgroup/unified');
  });

  it('converts docker units', () => {
    expect(cpusToQuota(1.5)).toEqual({ cpuQuota: 150000, cpuPeriod: 100000 });
    expect(sharesToWeight(1024)).toBe(39);
    expect(sharesToWeight(2)).toBe(1);
    expect(sharesToWeight(262144)).toBe(10000);
    expect(parseKeyValues('usage_usec 12\nnr_throttled 3\nbad line x')).toEqual(
      new Map([
        ['usage_usec', 12n],
        ['nr_throttled', 3n],
      ]),
    );
  });
});

describe('cgroup v2 on a fake cgroupfs tree', () => {
  it('delegates controllers, writes limits and reads stats and OOM kills', async () => {
    const root = await mkdtemp('/tmp/ctr-fakecg2-');
    try {
      await writeFile(join(root, 'cgroup.controllers'), 'cpuset cpu io memory pids');
      const cg = Cgroup.at({ mode: 'v2', unified: root, v1: {} }, 'ctr-x/c1');
      await cg.create({
        memory: 32 << 20,
        memorySwap: 64 << 20,
        cpuQuota: 50_000,
        cpuPeriod: 100_000,
        cpuShares: 1024,
        pidsLimit: 20,
      });
      const read = (f: string) => readFile(join(root, f), 'utf8');
      expect(await read('cgroup.subtree_control')).toBe('+cpu +cpuset +memory +pids');
      expect(await read('ctr-x/cgroup.subtree_control')).toBe('+cpu +cpuset +memory +pids');
      expect(await read('ctr-x/c1/memory.max')).toBe(String(32 << 20));
      expect(await read('ctr-x/c1/memory.swap.max')).toBe(String(32 << 20));
      expect(await read('ctr-x/c1/cpu.max')).toBe('50000 100000');
      expect(await read('ctr-x/c1/cpu.weight')).toBe('39');
      expect(await read('ctr-x/c1/pids.max')).toBe('20');

      const dir = join(root, 'ctr-x/c1');
      await writeFile(join(dir, 'cpu.stat'), 'usage_usec 1500\nuser_usec 1000\nnr_throttled 4\nthrottled_usec 250\n');
      await writeFile(join(dir, 'memory.current'), '1048576\n');
      await writeFile(join(dir, 'memory.stat'), 'anon 100\nfile 4096\n');
      await writeFile(join(dir, 'memory.events'), 'low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n');
      await writeFile(join(dir, 'pids.current'), '2\n');
      expect(await cg.stats()).toEqual({
        cpuUsageNanos: 1_500_000n,
        cpuThrottledPeriods: 4,
        cpuThrottledNanos: 250_000n,
        memoryUsage: 1048576,
        memoryLimit: 32 << 20,
        memoryCache: 4096,
        pidsCurrent: 2,
        pidsLimit: 20,
        oomKills: 1,
      });
      await writeFile(join(dir, 'cgroup.events'), 'populated 1\nfrozen 1\n');
      await cg.freeze();
      expect(await read('ctr-x/c1/cgroup.freeze')).toBe('1');
      await cg.apply({ memory: 0, pidsLimit: 0 });
      expect(await read('ctr-x/c1/memory.max')).toBe('max');
      expect(await read('ctr-x/c1/pids.max')).toBe('max');
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('cgroup v1 on a fake cgroupfs tree', () => {
  it('writes limits per controller, inherits cpuset, reads stats', async () => {
    const root = await mkdtemp('/tmp/ctr-fakecg1-');
    try {
      const v1 = {
        memory: join(root, 'memory'),
        cpu: join(root, 'cpu'),
        cpuacct: join(root, 'cpu'),
        cpuset: join(root, 'cpuset'),
        pids: join(root, 'pids'),
      };
      for (const d of new Set(Object.values(v1))) await mkdir(d, { recursive: true });
      await writeFile(join(v1.cpuset, 'cpuset.cpus'), '0-1');
      await writeFile(join(v1.cpuset, 'cpuset.mems'), '0');
      const cg = Cgroup.at({ mode: 'v1', v1 }, 'ctr-x/c1');
      expect(cg.dirs()).toEqual([
        join(v1.memory, 'ctr-x/c1'),
        join(v1.cpu, 'ctr-x/c1'),
        join(v1.cpuset, 'ctr-x/c1'),
        join(v1.pids, 'ctr-x/c1'),
      ]);
      await mkdir(join(v1.memory, 'ctr-x/c1'), { recursive: true });
      await writeFile(join(v1.memory, 'ctr-x/c1/memory.memsw.limit_in_bytes'), '9223372036854771712');
      await cg.create({ memory: 64 << 20, cpuQuota: 20_000, cpuPeriod: 100_000, pidsLimit: 0 });
      const read = (f: string) => readFile(join(root, f), 'utf8');
      expect(await read('memory/ctr-x/c1/memory.limit_in_bytes')).toBe(String(64 << 20));
      expect(await read('memory/ctr-x/c1/memory.memsw.limit_in_bytes')).toBe(String(128 << 20));
      expect(await read('cpu/ctr-x/c1/cpu.cfs_quota_us')).toBe('20000');
      expect(await read('cpuset/ctr-x/c1/cpuset.cpus')).toBe('0-1');
      expect(await read('cpuset/ctr-x/cpuset.mems')).toBe('0');
      expect(await read('pids/ctr-x/c1/pids.max')).toBe('max');

      await writeFile(join(v1.memory, 'ctr-x/c1/memory.limit_in_bytes'), '9223372036854771712');
      await writeFile(join(v1.memory, 'ctr-x/c1/memory.oom_control'), 'oom_kill_disable 0\nunder_oom 0\noom_kill 2\n');
      await writeFile(join(v1.cpu, 'ctr-x/c1/cpuacct.usage'), '123456789');
      const s = await cg.stats();
      expect(s.memoryLimit).toBe(0);
      expect(s.oomKills).toBe(2);
      expect(s.cpuUsageNanos).toBe(123456789n);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('this host (real kernel)', () => {
  const instance = randomInstance();
  afterAll(async () => {
    expect(await findLeaks({ instance, dirs: [] })).toEqual([]);
  });

  it('places a process, freezes it, kills everything in the group and removes it', async () => {
    const layout = await hostLayout();
    const cg = Cgroup.at(layout, `ctr-${instance}/c1`);
    await cg.create({ memory: 64 << 20, pidsLimit: 50, cpuQuota: 50_000, cpuPeriod: 100_000 });
    // The shell forks its sleeps only once it is in the group.
    const child = spawn('sh', ['-c', 'read go; sleep 30 & sleep 30 & wait'], { stdio: ['pipe', 'ignore', 'ignore'] });
    const exited = new Promise((r) => child.once('exit', r));
    try {
      await cg.addProcess(child.pid as number);
      child.stdin?.write('go\n');
      await waitFor(async () => (await cg.pids()).length === 3, 'the shell and its two sleeps in the group');
      const s = await cg.stats();
      expect(s.pidsCurrent).toBe(3);
      expect(s.memoryLimit).toBe(64 << 20);
      expect(s.pidsLimit).toBe(50);
      if (layout.v1.freezer || layout.mode === 'v2') {
        await cg.freeze();
        const state = (await readFile(`/proc/${child.pid}/status`, 'utf8')).match(/State:\s+(\w)/)?.[1];
        expect(['D', 'S']).toContain(state);
        await cg.thaw();
      }
      await cg.killAll();
      await exited;
      await waitFor(async () => (await cg.pids()).length === 0, 'an empty group');
    } finally {
      child.kill('SIGKILL');
      await cg.destroy();
      await cg.parent()?.destroy();
    }
  });

  it('primes cgroup moves by moving this process where it is: nowhere', async () => {
    const before = await readFile('/proc/self/cgroup', 'utf8');
    const primer = await CgroupMovePrimer.open(await hostLayout());
    for (let i = 0; i < 3; i++) primer.prime();
    // The writes land on the thread pool; what this process is in does not change.
    await new Promise((r) => setTimeout(r, 50));
    expect(await readFile('/proc/self/cgroup', 'utf8')).toBe(before);
    // With no hierarchy to write to, it does nothing.
    (await CgroupMovePrimer.open({ mode: 'v1', v1: {} })).prime();
  });
});
