import { describe, expect, it } from 'vitest';
import { DEFAULT_CAPABILITIES } from './capabilities.js';
import { commandOf, generateSpec, mergeEnv, parseUserDb, resolveUser } from './generate.js';
import { defaultSeccomp, fromDockerProfile } from './seccomp.js';
import { specProblems } from './validate.js';

const db = parseUserDb(
  'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n',
  'root:x:0:\nwheel:x:10:app\napp:x:1000:\naudio:x:29:app,other\n',
);

describe('generateSpec', () => {
  const image = { Entrypoint: ['/entry'], Cmd: ['serve'], Env: ['PATH=/app/bin:/bin', 'A=1'], WorkingDir: '/srv' };

  it('gives docker defaults for a plain run', () => {
    const spec = generateSpec(image, { id: 'abcdef0123456789', rootfs: 'rootfs' });
    expect(specProblems(spec)).toEqual([]);
    expect(spec.process?.args).toEqual(['/entry', 'serve']);
    expect(spec.process?.cwd).toBe('/srv');
    expect(spec.hostname).toBe('abcdef012345');
    expect(spec.process?.env).toEqual(['PATH=/app/bin:/bin', 'A=1', 'HOSTNAME=abcdef012345', 'HOME=/root']);
    expect([...(spec.process?.capabilities?.bounding ?? [])].sort()).toEqual([...DEFAULT_CAPABILITIES].sort());
    expect(spec.linux?.seccomp?.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(spec.linux?.namespaces?.map((n) => n.type)).toEqual(['pid', 'ipc', 'uts', 'mount', 'network', 'cgroup']);
    expect(spec.process?.rlimits).toEqual([{ type: 'RLIMIT_NOFILE', soft: 1048576, hard: 1048576 }]);
  });

  it('applies the run options as docker does', () => {
    const spec = generateSpec(image, {
      id: 'c1',
      rootfs: '/r',
      args: ['sh', '-c', 'true'],
      env: ['A=2', 'B=3'],
      user: 'app',
      tty: true,
      capAdd: ['NET_ADMIN'],
      capDrop: ['chown'],
      readOnly: true,
      memory: 32 << 20,
      cpus: 1.5,
      pidsLimit: 50,
      ulimits: [{ name: 'nproc', soft: 10, hard: 20 }],
      netns: '/run/ctr/netns/c1',
      tmpfs: { '/run': 'size=1m' },
      mounts: [{ destination: '/data', type: 'bind', source: '/var/lib/ctr/volumes/v/_data', options: ['rbind'] }],
      securityOpt: ['no-new-privileges'],
      users: db,
    });
    expect(spec.process?.args).toEqual(['/entry', 'sh', '-c', 'true']);
    expect(spec.process?.env).toContain('A=2');
    expect(spec.process?.env).toContain('TERM=xterm');
    expect(spec.process?.env).toContain('HOME=/home/app');
    expect(spec.process?.user).toEqual({ uid: 1000, gid: 1000, additionalGids: [10, 29] });
    expect(spec.process?.terminal).toBe(true);
    expect(spec.process?.noNewPrivileges).toBe(true);
    expect(spec.process?.capabilities?.bounding).toContain('CAP_NET_ADMIN');
    expect(spec.process?.capabilities?.bounding).not.toContain('CAP_CHOWN');
    expect(spec.root?.readonly).toBe(true);
    expect(spec.linux?.resources?.memory).toEqual({ limit: 32 << 20, swap: 64 << 20, reservation: undefined });
    expect(spec.linux?.resources?.cpu).toEqual({ period: 100000, quota: 150000 });
    expect(spec.linux?.resources?.pids).toEqual({ limit: 50 });
    expect(spec.linux?.namespaces).toContainEqual({ type: 'network', path: '/run/ctr/netns/c1' });
    expect(spec.mounts?.find((m) => m.destination === '/run')?.options).toContain('size=1m');
    expect(spec.mounts?.find((m) => m.destination === '/data')?.source).toBe('/var/lib/ctr/volumes/v/_data');
    expect(spec.process?.rlimits).toContainEqual({ type: 'RLIMIT_NPROC', soft: 10, hard: 20 });
  });

  it('gives --privileged every capability, no masks, no seccomp and writable /sys', () => {
    const spec = generateSpec(image, { id: 'p', rootfs: '/r', privileged: true });
    expect(spec.process?.capabilities?.bounding?.length).toBeGreaterThan(DEFAULT_CAPABILITIES.length + 20);
    expect(spec.linux?.maskedPaths).toEqual([]);
    expect(spec.linux?.seccomp).toBeUndefined();
    expect(spec.mounts?.find((m) => m.destination === '/sys')?.options).toContain('rw');
  });

  it('refuses bad options with docker wording', () => {
    expect(() => generateSpec({}, { id: 'x', rootfs: '/r' })).toThrow('no command specified');
    expect(() => generateSpec(image, { id: 'x', rootfs: '/r', user: 'ghost', users: db })).toThrow(
      'unable to find user ghost: no matching entries in passwd file',
    );
    expect(() => generateSpec(image, { id: 'x', rootfs: '/r', memory: 1024 })).toThrow(
      'minimum memory limit allowed is 6MB',
    );
    expect(() => generateSpec(image, { id: 'x', rootfs: '/r', capAdd: ['BOGUS'] })).toThrow('unknown capability');
    expect(() => generateSpec(image, { id: 'x', rootfs: '/r', workdir: 'rel' })).toThrow('absolute path');
    expect(() => generateSpec(image, { id: 'x', rootfs: '/r', securityOpt: ['nope'] })).toThrow(
      'invalid --security-opt',
    );
    expect(() =>
      generateSpec(image, {
        id: 'x',
        rootfs: '/r',
        mounts: [
          { destination: '/a', type: 'bind', source: '/x' },
          { destination: '/a', type: 'bind', source: '/y' },
        ],
      }),
    ).toThrow('duplicate mount point: /a');
  });

  it('takes seccomp=unconfined and docker-format profiles', () => {
    expect(
      generateSpec(image, { id: 'x', rootfs: '/r', securityOpt: ['seccomp=unconfined'] }).linux?.seccomp,
    ).toBeUndefined();
    const spec = generateSpec(image, {
      id: 'x',
      rootfs: '/r',
      securityOpt: ['seccomp=/etc/profile.json'],
      seccompProfile: {
        defaultAction: 'SCMP_ACT_ALLOW',
        archMap: [{ architecture: 'SCMP_ARCH_X86_64', subArchitectures: ['SCMP_ARCH_X86'] }],
        syscalls: [
          { names: ['mkdir'], action: 'SCMP_ACT_ERRNO' },
          { names: ['mount'], action: 'SCMP_ACT_ALLOW', includes: { caps: ['CAP_SYS_ADMIN'] } },
          { names: ['ptrace'], action: 'SCMP_ACT_ERRNO', excludes: { caps: ['CAP_SYS_PTRACE'] } },
          { names: ['arm_only'], action: 'SCMP_ACT_ALLOW', includes: { arches: ['arm64'] } },
        ],
      },
    });
    expect(spec.linux?.seccomp?.architectures).toEqual(['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86']);
    expect(spec.linux?.seccomp?.syscalls?.map((s) => s.names[0])).toEqual(['mkdir', 'ptrace']);
  });
});

describe('docker rules', () => {
  it('builds the command from entrypoint and cmd', () => {
    const image = { Entrypoint: ['/e'], Cmd: ['a'] };
    expect(commandOf(image, {})).toEqual(['/e', 'a']);
    expect(commandOf(image, { args: ['b'] })).toEqual(['/e', 'b']);
    expect(commandOf(image, { entrypoint: '/x' })).toEqual(['/x']);
    expect(commandOf(image, { entrypoint: '', args: ['sh'] })).toEqual(['sh']);
  });

  it('merges env, later keys winning', () => {
    expect(mergeEnv(['A=1', 'B=2'], ['A=3'], { PATH: '/bin', B: 'no' })).toEqual(['A=3', 'B=2', 'PATH=/bin']);
  });

  it('resolves users and groups from the image', () => {
    expect(resolveUser(undefined, db)).toEqual({ uid: 0, gid: 0, additionalGids: [], home: '/root' });
    expect(resolveUser('1000:wheel', db)).toEqual({ uid: 1000, gid: 10, additionalGids: [29], home: '/home/app' });
    expect(resolveUser('4242:4343', db)).toEqual({ uid: 4242, gid: 4343, additionalGids: [], home: '/' });
    expect(() => resolveUser('app:nogroup', db)).toThrow('unable to find group nogroup');
  });
});

describe('seccomp', () => {
  it('lets CAP_SYS_ADMIN unlock the administration calls and namespaces', () => {
    const plain = defaultSeccomp(DEFAULT_CAPABILITIES);
    const allowed = plain.syscalls?.[0].names ?? [];
    expect(allowed).toContain('read');
    expect(allowed).not.toContain('mount');
    expect(allowed).not.toContain('unshare');
    expect(plain.syscalls?.find((s) => s.names[0] === 'clone')?.args?.[0].op).toBe('SCMP_CMP_MASKED_EQ');
    const admin = defaultSeccomp([...DEFAULT_CAPABILITIES, 'CAP_SYS_ADMIN']);
    expect(admin.syscalls?.[0].names).toContain('mount');
    expect(admin.syscalls?.find((s) => s.names[0] === 'clone3')).toBeUndefined();
  });

  it('refuses a profile without a default action', () => {
    expect(() => fromDockerProfile({} as never)).toThrow('defaultAction');
  });
});
