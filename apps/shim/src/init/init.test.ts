/**
 * ctr-init on the real kernel: containers from the testkit's busybox rootfs,
 * checked from inside, and against runc running the same bundle.
 */
import { mkdir, rm, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Cgroup, hostLayout, type Resources } from '@ctr/cgroups';
import { DEFAULT_CAPABILITIES, defaultSeccomp, defaultSpec, type Spec } from '@ctr/oci';
import { buildBusyboxRootfs, findLeaks, randomInstance, run, waitFor } from '@ctr/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { hostCgroupInfo } from './host-cgroups.js';
import { InitError, launchInit } from './launch.js';
import { planFromSpec } from './plan.js';
import { SeccompFilters } from './seccomp.js';

const instance = randomInstance();
const dir = `/tmp/ctr-${instance}`;
const rootfs = join(dir, 'rootfs');

beforeAll(async () => {
  await buildBusyboxRootfs(rootfs);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  expect(await findLeaks({ instance, dirs: [dir] })).toEqual([]);
});

/** Runs a spec through ctr-init and returns its output and exit. */
async function runSpec(spec: Spec, seccompBpf?: Buffer) {
  const init = await launchInit({
    mode: 'create',
    plan: planFromSpec(spec, { cgroups: await hostCgroupInfo(), seccompBpf }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  init.waiter.stdout?.on('data', (d) => (stdout += d));
  init.waiter.stderr?.on('data', (d) => (stderr += d));
  await init.start();
  const exit = await init.exited;
  return { stdout, stderr, exit, pid: init.pid };
}

const sh = (script: string, patch: (s: Spec) => void = () => undefined) => {
  const spec = defaultSpec(rootfs, ['sh', '-c', script]);
  spec.hostname = 'box';
  patch(spec);
  return spec;
};

/** What both runtimes are asked about, one line each. */
const PROBES = [
  'echo pid1=$(cat /proc/1/comm) self=$$',
  'echo hostname=$(hostname)',
  'echo ids=$(id -u):$(id -g):$(id -G)',
  "grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t ' ' '",
  'echo dev=$(ls /dev | sort | tr "\\n" " ")',
  'awk \'$2 ~ /^\\/(proc|dev|dev\\/pts|dev\\/shm|dev\\/mqueue|sys)$/ {split($4,o,","); print "mount", $2, $3, o[1]}\' /proc/mounts | sort',
  'echo keys=$(stat -c %F /proc/keys)',
  'grep -E \' /proc/(sys|bus|fs|irq) \' /proc/mounts | awk \'{split($4,o,","); print "readonly", $2, o[1]}\' | sort',
  'echo null=$(stat -c %a:%t:%T /dev/null)',
  'echo cwd=$(pwd)',
].join('; ');

describe('ctr-init create', () => {
  it('runs the command as pid 1 with the rootfs, hostname, devices and docker defaults', async () => {
    const r = await runSpec(sh(PROBES));
    expect(r.exit.code).toBe(0);
    const out = r.stdout;
    expect(out).toContain('pid1=sh self=1');
    expect(out).toContain('hostname=box');
    expect(out).toContain('ids=0:0:0');
    // docker's default capability set, nothing ambient or inheritable.
    expect(out).toMatch(/CapEff: 00000000a80425fb/);
    expect(out).toMatch(/CapBnd: 00000000a80425fb/);
    expect(out).toMatch(/CapInh: 0000000000000000/);
    expect(out).toMatch(/NoNewPrivs: 0/);
    expect(out).toMatch(/dev=.*\bnull\b.*\bptmx\b.*\bpts\b.*\bshm\b.*\burandom\b.*\bzero\b/);
    expect(out).toContain('mount /proc proc rw');
    expect(out).toContain('mount /sys sysfs ro');
    expect(out).toContain('mount /dev/pts devpts rw');
    expect(out).toContain('keys=character special file');
    expect(out).toContain('null=666:1:3');
    expect(out).toContain('readonly /proc/sys ro');
    expect(out).toContain('cwd=/');
  });

  it('passes exit codes on, and 128+signal for a killed process', async () => {
    expect((await runSpec(sh('exit 3'))).exit.code).toBe(3);
    // pid 1 ignores signals from inside its namespace: kill it from outside, as a stop does.
    const init = await launchInit({
      mode: 'create',
      plan: planFromSpec(sh('sleep 30'), { cgroups: await hostCgroupInfo() }),
      stdio: ['ignore', 'ignore', 'ignore'],
    });
    await init.start();
    process.kill(init.pid, 'SIGKILL');
    expect(await init.exited).toMatchObject({ code: 137, signal: 9 });
  });

  it('applies user, groups, capabilities, no_new_privs and a seccomp filter', async () => {
    const r = await runSpec(
      sh(
        "id -u; id -G; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status | tr -s '\\t ' ' '; mkdir /x 2>&1 | head -c 200; echo; unshare -U true 2>&1 | head -c 80",
        (s) => {
          if (!s.process) return;
          s.process.user = { uid: 65534, gid: 65534, additionalGids: [10, 20] };
          s.process.noNewPrivileges = true;
          s.process.capabilities = {
            bounding: ['CAP_KILL'],
            effective: [],
            permitted: [],
            inheritable: [],
            ambient: [],
          };
          s.linux = {
            ...s.linux,
            seccomp: {
              defaultAction: 'SCMP_ACT_ALLOW',
              architectures: ['SCMP_ARCH_X86_64'],
              syscalls: [{ names: ['unshare'], action: 'SCMP_ACT_ERRNO', errnoRet: 38 }],
            },
          };
        },
      ),
    );
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('65534');
    expect(lines[1]).toBe('65534 10 20');
    expect(r.stdout).toMatch(/CapEff: 0000000000000000/);
    expect(r.stdout).toMatch(/NoNewPrivs: 1/);
    expect(r.stdout).toMatch(/Seccomp: 2/);
    expect(r.stdout).toMatch(/Permission denied/);
    expect(r.stdout).toMatch(/unshare.*(not implemented|Function not implemented)/i);
  });

  it('reports a missing executable as docker does (127) and a non-executable one (126)', async () => {
    const missing = await runSpec(defaultSpec(rootfs, ['no-such-command'])).catch((e) => e);
    expect(missing).toBeInstanceOf(InitError);
    expect(missing.message).toBe('exec: "no-such-command": executable file not found in $PATH');
    expect(missing.exitCode).toBe(127);
    await writeFile(join(rootfs, 'not-exec'), 'data', { mode: 0o644 });
    const noexec = await runSpec(defaultSpec(rootfs, ['/not-exec'])).catch((e) => e);
    expect(noexec.exitCode).toBe(126);
  });

  it('keeps mounts inside the rootfs even when the image has symlinks that point out', async () => {
    // An image whose /etc/hostname and /mnt escape to the host's /tmp.
    const outside = join(dir, 'outside');
    await mkdir(outside, { recursive: true });
    await rm(join(rootfs, 'etc/hostname'), { force: true });
    await symlink('/../../../../../../../../opt', join(rootfs, 'mnt-escape'));
    await symlink(`../../../../../../../../${outside.slice(1)}/hostname`, join(rootfs, 'etc/hostname'));
    const src = join(dir, 'hostname-src');
    await writeFile(src, 'from-the-shim\n');
    const r = await runSpec(
      sh('cat /etc/hostname; ls /mnt-escape/marker 2>&1 | head -c 100', (s) => {
        s.mounts?.push({ destination: '/etc/hostname', type: 'bind', source: src, options: ['rbind', 'ro'] });
        s.mounts?.push({ destination: '/mnt-escape', type: 'tmpfs', source: 'tmpfs', options: [] });
      }),
    );
    expect(r.exit.code).toBe(0);
    expect(r.stdout).toContain('from-the-shim');
    // The bind landed inside the rootfs (the symlink resolved in the root), not in `outside`.
    expect((await run('ls', [outside])).stdout.trim()).toBe('');
    // The tmpfs covered a directory inside the rootfs, not the host's /opt.
    expect((await run('grep', ['-c', ' /opt ', '/proc/self/mountinfo'])).stdout.trim()).toBe('0');
  });

  it('fails cleanly at the stage that went wrong', async () => {
    const err = await runSpec(
      sh('true', (s) => {
        s.mounts?.push({ destination: '/data', type: 'bind', source: join(dir, 'does-not-exist'), options: ['rbind'] });
      }),
    ).catch((e) => e);
    expect(err).toBeInstanceOf(InitError);
    expect(err.message).toMatch(/^mounts: bind source .*does-not-exist: no such file or directory$/);
  });
});

describe('limits through cgroups (this host)', () => {
  /** Runs a script in its own cgroup under the instance's parent; returns output, exit and the group's stats. */
  async function runLimited(script: string, resources: Resources) {
    const cg = Cgroup.at(await hostLayout(), `ctr-${instance}/${randomInstance('c')}`);
    await cg.create(resources);
    try {
      const init = await launchInit({
        mode: 'create',
        plan: planFromSpec(sh(script), { cgroups: await hostCgroupInfo() }),
        stdio: ['ignore', 'pipe', 'pipe'],
        place: (pid) => cg.addProcess(pid),
      });
      let out = '';
      init.waiter.stdout?.on('data', (d) => (out += d));
      init.waiter.stderr?.on('data', (d) => (out += d));
      await init.start();
      const exit = await init.exited;
      return { out, exit, stats: await cg.stats() };
    } finally {
      await cg.destroy();
      await cg
        .parent()
        ?.destroy()
        .catch(() => undefined);
    }
  }

  it('ends a memory hog at 32 MiB with 137 and counts the OOM kill', async () => {
    const r = await runLimited('x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done', {
      memory: 32 << 20,
      memorySwap: 32 << 20,
    });
    expect(r.exit.code).toBe(137);
    expect(r.stats.oomKills).toBeGreaterThanOrEqual(1);
  });

  it('makes fork fail past the pids limit', async () => {
    const r = await runLimited('for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 2 & done 2>&1; wait; echo done', {
      pidsLimit: 5,
    });
    expect(r.out).toMatch(/can't fork|Resource temporarily unavailable/);
    expect(r.stats.pidsLimit).toBe(5);
  });

  it('throttles a busy loop under a cpu quota', async () => {
    const r = await runLimited('timeout 1 sh -c "while :; do :; done"; true', { cpuQuota: 10_000, cpuPeriod: 100_000 });
    expect(r.stats.cpuThrottledPeriods).toBeGreaterThan(0);
    // 10% of one cpu for about a second: far below a full second of cpu time.
    expect(r.stats.cpuUsageNanos).toBeLessThan(500_000_000n);
  });
});

describe('the same bundle under runc', () => {
  const bundle = join(dir, 'bundle');
  const runcRoot = join(dir, 'runc-state');
  beforeAll(async () => {
    await mkdir(bundle, { recursive: true });
  });

  /** Runs the spec under runc in the instance's cgroup parent; cleans up what runc leaves. */
  async function underRunc(spec: Spec, name: string) {
    const runcSpec = { ...spec, linux: { ...spec.linux, cgroupsPath: `/ctr-${instance}/${name}` } };
    await writeFile(join(bundle, 'config.json'), JSON.stringify(runcSpec));
    const theirs = await run('runc', ['--root', runcRoot, 'run', '--bundle', bundle, `ctr-${instance}-${name}`], {
      timeoutMs: 30_000,
    });
    await run('runc', ['--root', runcRoot, 'delete', '-f', `ctr-${instance}-${name}`]);
    // runc made its cgroups under our instance's parent; remove what it leaves.
    for (const ctl of (await run('ls', ['/sys/fs/cgroup'])).stdout.split(/\s+/).filter(Boolean)) {
      for (const d of [`/sys/fs/cgroup/${ctl}/ctr-${instance}/${name}`, `/sys/fs/cgroup/${ctl}/ctr-${instance}`]) {
        await waitFor(async () => {
          const r = await run('rmdir', [d]);
          return r.code === 0 || r.stderr.includes('No such file');
        }, `rmdir ${d}`);
      }
    }
    return theirs;
  }

  it('answers the probes as ctr-init does', async () => {
    const spec = sh(PROBES);
    const ours = await runSpec(spec);
    const theirs = await underRunc(spec, 'diff');
    expect(theirs.code).toBe(0);
    const lines = (s: string) =>
      s
        .trim()
        .split('\n')
        .filter((l) => !l.startsWith('Seccomp'));
    expect(lines(ours.stdout)).toEqual(lines(theirs.stdout));
  });

  it('enforces the default seccomp profile as runc does', async () => {
    const probe = [
      "grep -E '^(Seccomp|NoNewPrivs):' /proc/self/status | tr -s '\\t ' ' '",
      'unshare -m true 2>&1 | head -c 60; echo',
      'mkdir /tmp/sc && rmdir /tmp/sc && echo mkdir-ok',
      'sh -c "echo forked"',
    ].join('; ');
    const spec = sh(probe, (s) => {
      s.linux = { ...s.linux, seccomp: defaultSeccomp(DEFAULT_CAPABILITIES) };
    });
    const ours = await runSpec(spec);
    const theirs = await underRunc(spec, 'seccomp');
    expect(ours.stdout).toContain('Seccomp: 2');
    expect(ours.stdout).toMatch(/unshare: unshare\(.*\): Operation not permitted/);
    expect(ours.stdout).toContain('mkdir-ok');
    expect(ours.stdout).toContain('forked');
    expect(ours.stdout).toBe(theirs.stdout);

    // Compiled ahead (ctr-init seccomp-bpf, kept by the shim) and loaded as it is: the same filter.
    const warnings: unknown[] = [];
    const filters = new SeccompFilters(join(dir, 'seccomp'), { warn: (e: unknown) => warnings.push(e) } as never);
    expect(await filters.get(spec)).toBeUndefined(); // not yet: the init compiles it, and so does the shim, for next time
    const program = await waitFor(() => filters.get(spec), 'the filter compiled ahead');
    expect(warnings).toEqual([]);
    expect(program.length % 8).toBe(0);
    const again = new SeccompFilters(join(dir, 'seccomp'), { warn: () => undefined } as never);
    expect(await again.get(spec)).toEqual(program); // kept on disk for the next shim
    const loaded = await runSpec(spec, program);
    expect(loaded.stdout).toBe(theirs.stdout);
  });
});
