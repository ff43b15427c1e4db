import { spawn } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { isChildSubreaper, pidfdOpen, pidfdSendSignal, setChildSubreaper } from './libc.js';
import { parseProcStat, processAlive, readCmdline, readProcStat } from './proc.js';

describe('/proc', () => {
  it('parses stat even when the command name has spaces and parentheses', () => {
    const fields = Array.from({ length: 50 }, (_, i) => String(i));
    fields[0] = 'S';
    fields[1] = '42';
    fields[3] = '70';
    fields[19] = '123456';
    const st = parseProcStat(`77 (we(ird) name) ${fields.join(' ')}`);
    expect(st).toEqual({ pid: 77, comm: 'we(ird) name', state: 'S', ppid: 42, session: 70, startTime: 123456 });
  });

  it('tells a live process from a dead one, and from a reused pid', async () => {
    const child = spawn('sleep', ['30']);
    const pid = child.pid as number;
    const st = await readProcStat(pid);
    expect(st?.ppid).toBe(process.pid);
    expect(await readCmdline(pid)).toEqual(['sleep', '30']);
    expect(await processAlive(pid, st?.startTime)).toBe(true);
    expect(await processAlive(pid, (st?.startTime ?? 0) + 1)).toBe(false);
    const exited = new Promise((r) => child.once('exit', r));
    child.kill('SIGKILL');
    await exited;
    expect(await processAlive(pid)).toBe(false);
  });
});

describe('pidfd and subreaper through koffi (real kernel)', () => {
  it('signals a process through its pidfd', async () => {
    const child = spawn('sleep', ['30']);
    const exited = new Promise<NodeJS.Signals | null>((r) => child.once('exit', (_c, s) => r(s)));
    const fd = pidfdOpen(child.pid as number);
    expect(fd).toBeGreaterThan(2);
    pidfdSendSignal(fd, 9);
    expect(await exited).toBe('SIGKILL');
    (await import('node:fs')).closeSync(fd);
  });

  it('sets and reads the child-subreaper flag', () => {
    setChildSubreaper(true);
    expect(isChildSubreaper()).toBe(true);
    setChildSubreaper(false);
    expect(isChildSubreaper()).toBe(false);
  });
});
