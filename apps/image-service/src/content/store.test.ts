import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ContentStore } from './store.js';

const root = mkdtempSync('/tmp/ctr-content-');
afterAll(() => rmSync(root, { recursive: true, force: true }));
const digestOf = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const blob = Buffer.from(Array.from({ length: 300_000 }, (_, i) => i % 251));
const ingests = (s: ContentStore) => readdirSync(s.ingestDir);

describe('content store', () => {
  it('makes a blob visible only whole and verified', async () => {
    const s = await new ContentStore(join(root, 'a')).init();
    const d = digestOf(blob);
    const w = await s.writer('layer-1', d, blob.length);
    await w.write(blob.subarray(0, 1000));
    expect(await s.has(d)).toBe(false);
    await w.write(blob.subarray(1000));
    expect(await w.commit()).toBe(d);
    expect(await s.read(d)).toEqual(blob);
    expect((await s.info(d)).size).toBe(blob.length);
    expect(ingests(s)).toEqual([]);
    await expect(s.writer('again', d, blob.length)).rejects.toThrow(/already exists/);
  });

  it('refuses a blob whose digest or size is wrong and keeps nothing of it', async () => {
    const s = await new ContentStore(join(root, 'b')).init();
    const wrong = `sha256:${'0'.repeat(64)}`;
    const w = await s.writer('bad', wrong, blob.length);
    await w.write(blob);
    await expect(w.commit()).rejects.toThrow(/unexpected commit digest sha256:[0-9a-f]{64}, expected sha256:0{64}/);
    const short = await s.writer('short', digestOf(blob), blob.length);
    await short.write(blob.subarray(0, 10));
    await expect(short.commit()).rejects.toThrow(/unexpected commit size 10, expected 300000/);
    const over = await s.writer('over', digestOf(blob), 5);
    await expect(over.write(blob)).rejects.toThrow(/more than the 5 bytes expected/);
    await over.close();
    await s.abort('over');
    expect(await s.list()).toEqual([]);
    expect(ingests(s)).toEqual([]);
  });

  it('resumes an interrupted ingest from its offset, after a restart too', async () => {
    const dir = join(root, 'c');
    const d = digestOf(blob);
    const first = await new ContentStore(dir).init();
    const w = await first.writer('layer-2', d, blob.length);
    await w.write(blob.subarray(0, 123_456));
    await w.close();
    const again = await new ContentStore(dir).init();
    expect(await again.statuses()).toEqual([
      expect.objectContaining({ ref: 'layer-2', offset: 123_456, total: blob.length, expected: d }),
    ]);
    const r = await again.writer('layer-2', d, blob.length);
    expect(r.offset).toBe(123_456);
    await r.write(blob.subarray(r.offset));
    expect(await r.commit()).toBe(d);
    expect(await again.read(d)).toEqual(blob);
    expect(existsSync(join(again.ingestDir))).toBe(true);
    expect(ingests(again)).toEqual([]);
  });

  it('lets one writer hold a ref, and runs concurrent fetches of one digest once', async () => {
    const s = await new ContentStore(join(root, 'd')).init();
    const w = await s.writer('held', '', 0);
    await expect(s.writer('held', '', 0)).rejects.toThrow(/locked/);
    await w.close();
    let runs = 0;
    const fetch = () =>
      s.once('sha256:x', async () => {
        runs++;
        await new Promise((r) => setTimeout(r, 20));
        return 'done';
      });
    expect(await Promise.all([fetch(), fetch(), fetch()])).toEqual(['done', 'done', 'done']);
    expect(runs).toBe(1);
  });
});
