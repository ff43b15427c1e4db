import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readJsonFile, writeFileAtomicSync } from './fsutil.js';

const dir = mkdtempSync(join(tmpdir(), 'ctr-fsutil-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('fsutil', () => {
  it('writes whole files with the mode asked for, leaving no temporary behind, even after a failure', async () => {
    const p = join(dir, 'sync', 'meta.json');
    writeFileAtomicSync(p, JSON.stringify({ b: 1 }));
    writeFileAtomicSync(p, JSON.stringify({ b: 2 }), 0o644);
    expect(await readJsonFile(p)).toEqual({ b: 2 });
    // The mode asked for, not the replaced file's: each write makes its file anew.
    expect(statSync(p).mode & 0o777).toBe(0o644);
    expect(readdirSync(join(dir, 'sync'))).toEqual(['meta.json']);
    // A directory where the file should go: the rename fails, nothing is left beside it.
    mkdirSync(join(dir, 'sync', 'taken.json'));
    expect(() => writeFileAtomicSync(join(dir, 'sync', 'taken.json'), '{}')).toThrow();
    expect(readdirSync(join(dir, 'sync')).sort()).toEqual(['meta.json', 'taken.json']);
    // With fewer fsyncs (a change that may be lost, a file that must only outlive a process): the same whole file.
    writeFileAtomicSync(p, JSON.stringify({ b: 3 }), 0o600, { sync: 'none' });
    expect(await readJsonFile(p)).toEqual({ b: 3 });
    writeFileAtomicSync(p, JSON.stringify({ b: 4 }), 0o600, { sync: 'file' });
    expect(await readJsonFile(p)).toEqual({ b: 4 });
    expect(statSync(p).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(dir, 'sync')).sort()).toEqual(['meta.json', 'taken.json']);
  });

  it('reads a missing file as undefined but refuses a corrupt one', async () => {
    expect(await readJsonFile(join(dir, 'missing.json'))).toBeUndefined();
    writeFileSync(join(dir, 'torn.json'), '{"a":');
    await expect(readJsonFile(join(dir, 'torn.json'))).rejects.toThrow(/torn.json is not valid JSON/);
  });
});
