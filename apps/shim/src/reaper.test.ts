import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

// In a process of its own: it becomes a subreaper, which a test worker must not.
function runScript(script: string): Promise<string> {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: join(import.meta.dirname, '..'),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise((resolve) => child.once('exit', () => resolve(out.trim())));
}

describe('Reaper', () => {
  it("keeps the status of an orphan reaped before it was adopted (runc exec's pid file read late)", async () => {
    const out = await runScript(`
      import { execFileSync } from 'node:child_process';
      import { setChildSubreaper } from '@ctr/sys';
      import { Reaper } from './dist/reaper.js';
      setChildSubreaper();
      const reaper = new Reaper();
      // A grandchild whose parent leaves at once, so it is ours; it exits with 7 a little later (at once,
      // it could end before its parent, which would reap it itself).
      const pid = Number(execFileSync('sh', ['-c', '(sleep 0.1; exit 7) & echo $!']).toString().trim());
      await new Promise((r) => setTimeout(r, 500));
      await reaper.sweep();
      const status = await reaper.adopt(pid);
      process.stdout.write(String(status >> 8));
      process.exit(0);
    `);
    expect(out).toBe('7');
  });
});
