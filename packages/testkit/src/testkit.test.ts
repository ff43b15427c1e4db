/** The testkit itself, on the real things it drives: registry, skopeo, netns, mounts. */
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { cgroupParent } from '@ctr/common/names';
import { join } from 'node:path';
import { MNT, mount, umount } from '@ctr/sys';
import { afterAll, describe, expect, it } from 'vitest';
import { buildBusyboxImage, buildBusyboxRootfs, pushLayout } from './images.js';
import { LanHost } from './lan.js';
import { findLeaks, sweepLeaks } from './leaks.js';
import { TestRegistry } from './registry.js';
import { mustRun, randomInstance, run } from './util.js';

const work = await mkdtemp('/tmp/ctr-testkit-');
afterAll(() => rm(work, { recursive: true, force: true }));

const inCgnat = (ip: string) => {
  const [a, b] = ip.split('.').map(Number);
  return a === 100 && b >= 64 && b <= 127;
};

describe('test images', () => {
  it('builds a busybox rootfs that runs', async () => {
    const rootfs = join(work, 'rootfs');
    await buildBusyboxRootfs(rootfs);
    const out = await mustRun('chroot', [rootfs, '/bin/sh', '-c', 'echo hello from $(basename $(readlink /bin/ls))']);
    expect(out).toBe('hello from busybox\n');
  });

  it('builds an OCI layout that skopeo reads, and pushes it to a real registry', async () => {
    const image = await buildBusyboxImage(join(work, 'img'));
    const local = JSON.parse(await mustRun('skopeo', ['inspect', `oci:${image.dir}:latest`]));
    expect(local.Layers).toEqual(image.layerDigests);
    expect(local.Digest).toBe(image.manifestDigest);

    const registry = await TestRegistry.start();
    try {
      await pushLayout(image.dir, 'latest', `${registry.host}/library/busybox:latest`);
      const remote = JSON.parse(
        await mustRun('skopeo', ['inspect', '--tls-verify=false', `docker://${registry.host}/library/busybox:latest`]),
      );
      expect(remote.Layers).toEqual(image.layerDigests);
    } finally {
      await registry.stop();
    }
  });

  it('builds the same digests twice (reproducible layers)', async () => {
    const a = await buildBusyboxImage(join(work, 'r1'));
    const b = await buildBusyboxImage(join(work, 'r2'));
    expect(a.manifestDigest).toBe(b.manifestDigest);
  });
});

describe('registry with basic auth', () => {
  it('refuses anonymous requests and accepts the credentials', async () => {
    const registry = await TestRegistry.start({ auth: { username: 'ci', password: 's3cret' } });
    try {
      const anon = await fetch(`http://${registry.host}/v2/`);
      expect(anon.status).toBe(401);
      expect(anon.headers.get('www-authenticate')).toMatch(/^Basic realm="ctr-test"/);
      const authed = await fetch(`http://${registry.host}/v2/`, {
        headers: { authorization: `Basic ${Buffer.from('ci:s3cret').toString('base64')}` },
      });
      expect(authed.status).toBe(200);
    } finally {
      await registry.stop();
    }
  });
});

describe('a LAN machine in a network namespace', () => {
  it('reaches the host and is reached, on addresses in 100.64.0.0/10, and leaves nothing', async () => {
    const instance = randomInstance();
    const lan = await LanHost.create(instance);
    try {
      expect(inCgnat(lan.hostIp) && inCgnat(lan.peerIp)).toBe(true);
      const fromLan = await lan.exec(['busybox', 'ping', '-c', '1', '-W', '2', lan.hostIp]);
      expect(fromLan.code).toBe(0);
      const toLan = await run('busybox', ['ping', '-c', '1', '-W', '2', lan.peerIp]);
      expect(toLan.code).toBe(0);
      const leaks = await findLeaks({ instance, dirs: [] });
      expect(leaks.some((l) => l.startsWith('netns'))).toBe(true);
      expect(leaks.some((l) => l.startsWith('link'))).toBe(true);
    } finally {
      await lan.close();
    }
    expect(await findLeaks({ instance, dirs: [] })).toEqual([]);
  });
});

describe('the leak check', () => {
  it('finds a mount and a process left under the engine dir', async () => {
    const instance = randomInstance();
    const dir = join(work, `leak-${instance}`);
    await mkdir(join(dir, 'mnt'), { recursive: true });
    mount('tmpfs', join(dir, 'mnt'), 'tmpfs', 0, 'size=1m');
    const sleeper = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', dir], { stdio: 'ignore' });
    try {
      const leaks = await findLeaks({ instance, dirs: [dir] });
      expect(leaks).toContain(`mount tmpfs on ${join(dir, 'mnt')}`);
      expect(leaks.some((l) => l.startsWith(`process ${sleeper.pid}:`))).toBe(true);
    } finally {
      umount(join(dir, 'mnt'), MNT.DETACH);
      const exited = new Promise((r) => sleeper.once('exit', r));
      sleeper.kill('SIGKILL');
      await exited;
    }
    expect(await findLeaks({ instance, dirs: [dir] })).toEqual([]);
  });

  it("sweeps what a container whose shim was killed leaves: its processes in the instance's cgroup, then the cgroup", async () => {
    const instance = randomInstance();
    const parent = `/sys/fs/cgroup/pids/${cgroupParent(instance)}`;
    await mkdir(`${parent}/c1`, { recursive: true });
    // Its command line carries none of the instance's names, as a container's does not.
    const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
    const exited = new Promise((r) => sleeper.once('exit', r));
    await writeFile(`${parent}/c1/cgroup.procs`, String(sleeper.pid));
    expect(await findLeaks({ instance, dirs: [] })).toEqual([`cgroup ${parent}`]);
    await sweepLeaks({ instance, dirs: [] });
    await exited;
    expect(existsSync(parent)).toBe(false);
    expect(await findLeaks({ instance, dirs: [] })).toEqual([]);
  });
});
