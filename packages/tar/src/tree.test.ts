/**
 * Trees as tar streams, read through directory fds: what the walk writes,
 * and that a symlink (to a directory or out of the tree) is carried as a
 * link, never followed.
 */
import { linkSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AT, closeFd, O, openat2 } from '@ctr/sys';
import { afterAll, describe, expect, it } from 'vitest';
import { TarReader } from './reader.js';
import { directoryTar, pathTar } from './tree.js';
import type { TarEntry } from './types.js';

const dir = mkdtempSync('/tmp/ctr-tree-');
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function list(gen: AsyncGenerator<Buffer>): Promise<Array<[string, string, string]>> {
  const out: Array<[string, string, string]> = [];
  let data = '';
  let cur: TarEntry | undefined;
  const reader = new TarReader({
    entry: (e) => {
      cur = e;
      data = '';
    },
    data: (c) => {
      data += c.toString();
    },
    end: () => {
      if (cur) out.push([cur.path, cur.type, cur.type === 'file' ? data : cur.linkname]);
    },
  });
  for await (const c of gen) reader.write(c);
  reader.end();
  return out;
}

describe('tree tar', () => {
  const root = join(dir, 'root');
  mkdirSync(join(root, 'd', 'e'), { recursive: true });
  writeFileSync(join(root, 'd', 'f.txt'), 'file');
  linkSync(join(root, 'd', 'f.txt'), join(root, 'd', 'hard.txt'));
  symlinkSync('/etc', join(root, 'd', 'etc'));
  symlinkSync('e', join(root, 'd', 'rel'));
  const fd = openat2(AT.FDCWD, root, O.RDONLY | O.DIRECTORY, 0, 0);
  afterAll(() => closeFd(fd));

  it('writes a directory under a new name, links as links, files once', async () => {
    expect(await list(pathTar(fd, 'd', 'copy'))).toEqual([
      ['copy/', 'dir', ''],
      ['copy/e/', 'dir', ''],
      ['copy/etc', 'symlink', '/etc'],
      ['copy/f.txt', 'file', 'file'],
      ['copy/hard.txt', 'link', 'copy/f.txt'],
      ['copy/rel', 'symlink', 'e'],
    ]);
  });

  it('writes a directory contents only, and a symlink itself rather than what it names', async () => {
    expect((await list(pathTar(fd, 'd', ''))).map((e) => e[0])).toEqual(['e/', 'etc', 'f.txt', 'hard.txt', 'rel']);
    const d = openat2(fd, 'd', O.RDONLY | O.DIRECTORY, 0, 0);
    try {
      expect(await list(pathTar(d, 'etc', 'etc'))).toEqual([['etc', 'symlink', '/etc']]);
    } finally {
      closeFd(d);
    }
  });

  it('a whole directory as a layer, with an owner set for every entry', async () => {
    const chunks: Buffer[] = [];
    for await (const c of directoryTar(fd, { owner: { uid: 7, gid: 8 } })) chunks.push(c);
    const owners = new Set<string>();
    const reader = new TarReader({ entry: (e) => owners.add(`${e.uid}:${e.gid}`), data: () => {}, end: () => {} });
    reader.write(Buffer.concat(chunks));
    reader.end();
    expect([...owners]).toEqual(['7:8']);
  });
});
