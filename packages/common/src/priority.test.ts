import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { getPriority } from 'node:os';
import { describe, expect, it } from 'vitest';
import { renice } from './priority.js';

const autogroupNice = (pid: number) =>
  Number(readFileSync(`/proc/${pid}/autogroup`, 'utf8').match(/nice (-?\d+)/)?.[1]);

describe('renice', () => {
  it("sets every thread's nice value, and the session's group's when the process leads its session", async () => {
    // A Node child has a dozen threads; detached, it leads its own session (a shim's case).
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { detached: true, stdio: 'ignore' });
    try {
      await new Promise((r) => child.once('spawn', r));
      const pid = child.pid as number;
      const threads = () => readdirSync(`/proc/${pid}/task`).map(Number);
      for (let i = 0; i < 200 && threads().length < 4; i++) await new Promise((r) => setTimeout(r, 10));
      renice(7, pid);
      const tids = threads();
      expect(tids.length).toBeGreaterThan(3);
      for (const tid of tids) expect(getPriority(tid)).toBe(7);
      if (existsSync(`/proc/${pid}/autogroup`)) {
        expect(autogroupNice(pid)).toBe(7);
        renice(0, pid);
        expect(autogroupNice(pid)).toBe(0);
      }
    } finally {
      child.kill('SIGKILL');
    }
  });

  it("leaves the group alone for a process that shares its session (the group is everybody's)", async () => {
    const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
    try {
      await new Promise((r) => child.once('spawn', r));
      const pid = child.pid as number;
      if (!existsSync(`/proc/${pid}/autogroup`)) return;
      const before = autogroupNice(pid);
      renice(5, pid);
      expect(getPriority(pid)).toBe(5);
      expect(autogroupNice(pid)).toBe(before);
    } finally {
      child.kill('SIGKILL');
    }
  });
});
