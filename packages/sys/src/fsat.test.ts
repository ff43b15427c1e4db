import { execFileSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { addInodeFlags, FS_FL } from './fsat.js';

const onExt4 = execFileSync('stat', ['-f', '-c', '%T', '/var/tmp'], { encoding: 'utf8' }).trim() === 'ext2/ext3';
const lsattr = (p: string) => execFileSync('lsattr', ['-d', p], { encoding: 'utf8' }).split(' ')[0];

describe('inode flags', () => {
  it.skipIf(!onExt4)(
    'adds chattr +T to a directory, keeps its other flags, and answers false where there are none',
    () => {
      const dir = mkdtempSync(join('/var/tmp', 'ctr-fsat-'));
      const shm = mkdtempSync(join('/dev/shm', 'ctr-fsat-'));
      try {
        const before = lsattr(dir);
        const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
        try {
          expect(addInodeFlags(fd, FS_FL.TOPDIR)).toBe(true);
          expect(addInodeFlags(fd, FS_FL.TOPDIR)).toBe(true); // already there
        } finally {
          closeSync(fd);
        }
        const after = lsattr(dir);
        expect(before).not.toContain('T');
        expect(after).toContain('T');
        expect(after.replace('T', '-')).toBe(before); // nothing else changed

        const tfd = openSync(shm, constants.O_RDONLY | constants.O_DIRECTORY);
        try {
          expect(addInodeFlags(tfd, FS_FL.TOPDIR)).toBe(false); // tmpfs has no such flags
        } finally {
          closeSync(tfd);
        }
      } finally {
        rmSync(dir, { recursive: true, force: true });
        rmSync(shm, { recursive: true, force: true });
      }
    },
  );
});
