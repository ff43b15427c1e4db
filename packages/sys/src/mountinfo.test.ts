import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { MNT, MS, mount, SysError, umount } from './libc.js';
import { mountsUnder, parseMountInfo, readMountInfo } from './mountinfo.js';

describe('mountinfo', () => {
  it('parses fields, optional fields and escaped paths', () => {
    const text =
      '36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue\n' +
      '37 1 0:5 / /tmp rw - tmpfs tmpfs rw\n';
    const [a, b] = parseMountInfo(text);
    expect(a).toMatchObject({
      id: 36,
      parentId: 35,
      device: '98:0',
      root: '/mnt1',
      mountPoint: '/mnt/with space',
      options: ['rw', 'noatime'],
      optionalFields: ['master:1', 'shared:7'],
      fsType: 'ext3',
      source: '/dev/root',
      superOptions: ['rw', 'errors=continue'],
    });
    expect(b.optionalFields).toEqual([]);
    expect(() => parseMountInfo('1 2 3')).toThrow(/malformed/);
  });

  it('lists mounts below a directory deepest first', () => {
    const m = parseMountInfo(
      '1 0 0:1 / /a rw - tmpfs t rw\n2 1 0:2 / /a/b rw - tmpfs t rw\n3 0 0:3 / /ab rw - tmpfs t rw\n',
    );
    expect(mountsUnder(m, '/a').map((x) => x.mountPoint)).toEqual(['/a/b', '/a']);
  });
});

describe('mount and umount through koffi (real kernel)', () => {
  it('mounts a tmpfs that mountinfo then shows, and unmounts it', async () => {
    const dir = await mkdtemp('/tmp/ctr-sys-');
    const target = join(dir, 'mnt');
    await import('node:fs/promises').then((fs) => fs.mkdir(target));
    try {
      mount('tmpfs', target, 'tmpfs', MS.NOSUID | MS.NODEV, 'size=1m,mode=0700');
      const found = (await readMountInfo()).find((m) => m.mountPoint === target);
      expect(found?.fsType).toBe('tmpfs');
      expect(found?.options).toContain('nosuid');
      umount(target, MNT.DETACH);
      expect((await readMountInfo()).some((m) => m.mountPoint === target)).toBe(false);
    } finally {
      try {
        umount(target, MNT.DETACH);
      } catch {}
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('reports failures with the errno name', () => {
    let err: unknown;
    try {
      umount('/nonexistent-ctr-path');
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(SysError);
    expect((err as SysError).code).toBe('ENOENT');
    expect((err as SysError).message).toMatch(/umount2 \/nonexistent-ctr-path: No such file or directory/);
  });
});
