import { describe, expect, it } from 'vitest';
import { formatRecord } from './log.js';

describe('log formatting for a TTY', () => {
  it('prints time, level, name, message and the other fields', () => {
    const line = formatRecord(
      JSON.stringify({
        level: 40,
        time: Date.UTC(2026, 0, 2, 3, 4, 5, 6),
        pid: 1,
        name: 'ctrd',
        msg: 'restarting',
        service: 'snapshotter',
        n: 2,
      }),
    );
    expect(line).toBe('03:04:05.006 WARN  ctrd: restarting service=snapshotter n=2');
  });
  it('passes through what is not JSON', () => {
    expect(formatRecord('plain text')).toBe('plain text');
  });
});
