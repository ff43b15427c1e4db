import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

/** Runs `script` (an ES module importing @ctr/sys) in a Node made for forking; its stdout and exit code. */
function runForking(script: string): Promise<{ out: string; code: number | null }> {
  const child = spawn(process.execPath, ['--single-threaded', '--input-type=module', '-e', script], {
    cwd: join(import.meta.dirname, '..'),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
  });
  return new Promise((resolve) => child.once('close', (code) => resolve({ out, code })));
}

describe('forkNode', () => {
  it('gives the child the whole heap, pages mapped while the heap grows included, an event loop of its own and its exit status', async () => {
    // The heap grows (and V8 maps pages MADV_DONTFORK) as the loop of forks runs: each child walks
    // everything allocated so far, collects garbage and does I/O on its own loop, then reports back.
    const { out, code } = await runForking(`
      import { forkNode, getpid, reapChild } from '@ctr/sys';
      import { readFile } from 'node:fs/promises';
      const pause = new Int32Array(new SharedArrayBuffer(4));
      const kept = [];
      const results = [];
      for (let round = 0; round < 12; round++) {
        for (let i = 0; i < 20000; i++) kept.push({ round, i, s: 'x'.repeat(i % 64) });
        const pid = forkNode();
        if (pid === 0) {
          let sum = 0;
          for (const o of kept) sum += o.s.length;
          for (let i = 0; i < 50000; i++) kept.push({ i });
          const status = await readFile('/proc/self/status', 'utf8');
          const own = Number(status.match(/^Pid:\\s+(\\d+)/m)[1]) === getpid();
          await new Promise((r) => setTimeout(r, 5));
          // Every other child ends by process.exit, the rest when nothing is left to do.
          if (round % 2 || !own || !sum) process.exit(own && sum > 0 ? 0 : 3);
          break;
        }
        let status;
        while ((status = reapChild(pid)) === undefined) Atomics.wait(pause, 0, 0, 5);
        results.push(status); // the raw wait status: 0 is exit 0; a crash is its signal

      }
      if (results.length === 12) process.stdout.write(JSON.stringify(results));
    `);
    expect(code).toBe(0);
    expect(JSON.parse(out)).toEqual(Array(12).fill(0));
  });

  it("ends a child with its exception's status, as Node does", async () => {
    const { out, code } = await runForking(`
      import { forkNode, reapChild } from '@ctr/sys';
      const pause = new Int32Array(new SharedArrayBuffer(4));
      const pid = forkNode();
      if (pid === 0) setTimeout(() => { throw new Error('boom'); }, 1);
      else {
        let status;
        while ((status = reapChild(pid)) === undefined) Atomics.wait(pause, 0, 0, 5);
        process.stdout.write(String(status));
      }
    `);
    expect(code).toBe(0);
    expect(Number(out)).toBe(1 << 8); // exited, status 1; not killed by a signal
  });
});
