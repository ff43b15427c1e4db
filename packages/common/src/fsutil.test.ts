import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readJsonFile, writeFileAtomic } from './fsutil.js';

const dir = mkdtempSync(join(tmpdir(), 'ctr-fsutil-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('fsutil', () => {
  it('writes whole files and leaves no temporary behind', async () => {
    const p = join(dir, 'sub', 'state.json');
    await writeFileAtomic(p, JSON.stringify({ a: 1 }));
    await writeFileAtomic(p, JSON.stringify({ a: 2 }));
    expect(await readJsonFile(p)).toEqual({ a: 2 });
    expect(readdirSync(join(dir, 'sub'))).toEqual(['state.json']);
  });

  it('reads a missing file as undefined but refuses a corrupt one', async () => {
    expect(await readJsonFile(join(dir, 'missing.json'))).toBeUndefined();
    writeFileSync(join(dir, 'torn.json'), '{"a":');
    await expect(readJsonFile(join(dir, 'torn.json'))).rejects.toThrow(/torn.json is not valid JSON/);
  });
});
