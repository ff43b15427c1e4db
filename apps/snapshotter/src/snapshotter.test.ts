/** The snapshotter as ctrd runs it, over its socket, mounting what it returns on the real kernel. */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Kind, SnapshotsService } from '@ctr/api/snapshots/v1/snapshots';
import type { Mount } from '@ctr/api/types/v1/types';
import { type ApiClient, readStream } from '@ctr/common/grpc';
import { TestEngine, withSnapshotMounted } from '@ctr/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let engine: TestEngine;
let snaps: ApiClient<typeof SnapshotsService>;
let target: string;

beforeAll(async () => {
  engine = await TestEngine.start();
  snaps = engine.client(SnapshotsService, 'snapshotter');
  target = join(engine.dir, 'mnt');
  await mkdir(target, { recursive: true });
});
afterAll(async () => {
  await engine?.stop();
});

const withMount = <T>(mounts: Mount[], fn: (dir: string) => Promise<T>) => withSnapshotMounted(mounts, target, fn);

const list = async (filters: string[] = []) => {
  const out: string[] = [];
  for await (const r of readStream(snaps.list({ filters }))) out.push(...r.info.map((i) => i.name));
  return out.sort();
};

describe('snapshots', () => {
  it('prepares, commits, stacks, views and removes', async () => {
    const base = await snaps.prepare({ key: 'base-active', parent: '', labels: {} });
    expect(base.mounts[0]).toMatchObject({ type: 'bind', options: ['rw', 'rbind'] });
    await withMount(base.mounts, (d) => writeFile(join(d, 'a'), 'from base'));
    await snaps.commit({ name: 'base', key: 'base-active', labels: { 'ctr.layer': '1' } });

    const top = await snaps.prepare({ key: 'top-active', parent: 'base', labels: {} });
    expect(top.mounts[0].type).toBe('overlay');
    await withMount(top.mounts, async (d) => {
      expect(await readFile(join(d, 'a'), 'utf8')).toBe('from base');
      await writeFile(join(d, 'b'), 'from top');
      await rm(join(d, 'a'));
    });
    await snaps.commit({ name: 'top', key: 'top-active', labels: {} });

    const view = await snaps.view({ key: 'v', parent: 'top', labels: {} });
    expect(view.mounts[0].options).toEqual([expect.stringMatching(/^lowerdir=.*:.*$/)]);
    await withMount(view.mounts, async (d) => {
      expect(existsSync(join(d, 'a'))).toBe(false);
      expect(await readFile(join(d, 'b'), 'utf8')).toBe('from top');
      await expect(writeFile(join(d, 'c'), 'x')).rejects.toThrow(/EROFS|read-only/);
    });

    expect(await snaps.stat({ key: 'base' })).toMatchObject({
      name: 'base',
      kind: Kind.KIND_COMMITTED,
      labels: { 'ctr.layer': '1' },
    });
    expect(await list(['kind==committed'])).toEqual(['base', 'top']);
    expect(await list(['parent==top'])).toEqual(['v']);
    expect(await list(['labels."ctr.layer"==1'])).toEqual(['base']);
    const updated = await snaps.update({
      info: { name: 'top', parent: '', kind: 0, labels: { keep: 'yes' } },
      updateMask: ['labels.keep'],
    });
    expect(updated.labels).toEqual({ keep: 'yes' });
    const usage = await snaps.usage({ key: 'base' });
    expect(usage.inodes).toBe(1n);
    expect(usage.size).toBeGreaterThan(0n);

    await expect(snaps.remove({ key: 'base' })).rejects.toThrow(/has children/);
    await expect(snaps.commit({ name: 'x', key: 'v', labels: {} })).rejects.toThrow(/not active/);
    await expect(snaps.prepare({ key: 'base', parent: '', labels: {} })).rejects.toThrow(/already exists/);
    await expect(snaps.prepare({ key: 'y', parent: 'nope', labels: {} })).rejects.toThrow(/does not exist/);
    for (const k of ['v', 'top', 'base']) await snaps.remove({ key: k });
    await snaps.remove({ key: 'base' });
    expect(await list()).toEqual([]);
  });

  it('keeps its snapshots under a chattr +T directory, so that ext4 spreads their trees', () => {
    const dir = join(engine.root, 'snapshots/overlay2/snapshots');
    if (execFileSync('stat', ['-f', '-c', '%T', dir], { encoding: 'utf8' }).trim() !== 'ext2/ext3') return;
    expect(execFileSync('lsattr', ['-d', dir], { encoding: 'utf8' }).split(' ')[0]).toContain('T');
  });

  it('mounts a 128-layer chain, past the one-page limit of mount options', async () => {
    let parent = '';
    for (let i = 0; i < 128; i++) {
      const m = await snaps.prepare({ key: `l${i}-active`, parent, labels: {} });
      await withMount(m.mounts, (d) => writeFile(join(d, `layer${i}`), String(i)));
      await snaps.commit({ name: `l${i}`, key: `l${i}-active`, labels: {} });
      parent = `l${i}`;
    }
    const top = await snaps.prepare({ key: 'app', parent, labels: {} });
    const lowerdir = top.mounts[0].options.find((o) => o.startsWith('lowerdir=')) ?? '';
    expect(lowerdir.split(':')).toHaveLength(128);
    expect(top.mounts[0].options.join(',').length).toBeGreaterThan(4096);
    await withMount(top.mounts, async (d) => {
      for (const i of [0, 63, 127]) expect(await readFile(join(d, `layer${i}`), 'utf8')).toBe(String(i));
    });
    await snaps.remove({ key: 'app' });
    for (let i = 127; i >= 0; i--) await snaps.remove({ key: `l${i}` });
  });

  it('prepares on one parent concurrently', async () => {
    const m = await snaps.prepare({ key: 'p-active', parent: '', labels: {} });
    expect(m.mounts).toHaveLength(1);
    await snaps.commit({ name: 'p', key: 'p-active', labels: {} });
    const keys = Array.from({ length: 8 }, (_, i) => `c${i}`);
    await Promise.all(keys.map((key) => snaps.prepare({ key, parent: 'p', labels: {} })));
    expect(await list(['parent==p'])).toEqual(keys);
    for (const k of [...keys, 'p']) await snaps.remove({ key: k });
  });

  it('cleans up directories no snapshot owns, after a crash too', async () => {
    const kept = await snaps.prepare({ key: 'kept-active', parent: '', labels: {} });
    await withMount(kept.mounts, (d) => writeFile(join(d, 'f'), 'kept'));
    await snaps.commit({ name: 'kept', key: 'kept-active', labels: {} });
    const stray = join(engine.root, 'snapshots', 'overlay2', 'snapshots', '9999', 'fs');
    await mkdir(stray, { recursive: true });
    await engine.crashService('snapshotter');
    expect(existsSync(stray)).toBe(false);
    const v = await snaps.view({ key: 'kv', parent: 'kept', labels: {} });
    await withMount(v.mounts, async (d) => expect(await readFile(join(d, 'f'), 'utf8')).toBe('kept'));
    expect((await snaps.cleanup({})).removed).toEqual([]);
    for (const k of ['kv', 'kept']) await snaps.remove({ key: k });
  });
});
