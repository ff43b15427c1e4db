import type { Envelope } from '@ctr/api/events/v1/events';
import { describe, expect, it } from 'vitest';
import { eventFilter, formatDockerEvent, parseTime, toDockerEvent } from './docker-events.js';

const at = new Date('2026-01-02T03:04:05.123Z');
const env = (event: Envelope['event'], topic: string): Envelope => ({
  id: 'x',
  timestamp: at,
  instance: 'i',
  source: 's',
  topic,
  event,
});

describe('events as docker shows them', () => {
  it('maps a container exit to die with its exit code', () => {
    const e = toDockerEvent(
      env(
        { $case: 'taskExited', value: { containerId: 'abc123', execId: '', pid: 7, exitStatus: 3, oomKilled: false } },
        'task.exited',
      ),
    );
    expect(e).toMatchObject({
      Type: 'container',
      Action: 'die',
      Actor: { ID: 'abc123', Attributes: { exitCode: '3', pid: '7' } },
      status: 'die',
      id: 'abc123',
    });
    expect(e.time).toBe(Math.floor(at.getTime() / 1000));
    expect(e.timeNano).toBe(BigInt(at.getTime()) * 1_000_000n);
    expect(formatDockerEvent(e)).toBe(
      '2026-01-02T03:04:05.123000000Z container die abc123 (exitCode=3, oomKilled=false, pid=7)',
    );
  });

  it('names exec exits exec_die, and image and service events by name', () => {
    expect(
      toDockerEvent(
        env(
          { $case: 'taskExited', value: { containerId: 'c', execId: 'e1', pid: 1, exitStatus: 0, oomKilled: false } },
          'task.exited',
        ),
      ).Action,
    ).toBe('exec_die');
    expect(
      toDockerEvent(
        env({ $case: 'imagePulled', value: { name: 'busybox:latest', digest: 'sha256:1' } }, 'image.pulled'),
      ),
    ).toMatchObject({ Type: 'image', Action: 'pull', Actor: { ID: 'busybox:latest' } });
    expect(
      toDockerEvent(
        env({ $case: 'serviceRestarted', value: { name: 'snapshotter', pid: 9, restarts: 2 } }, 'service.restarted'),
      ),
    ).toMatchObject({ Type: 'service', Action: 'restart', Actor: { ID: 'snapshotter' } });
  });

  it('filters like docker: same key ORs, different keys AND', () => {
    const die = toDockerEvent(
      env(
        { $case: 'taskExited', value: { containerId: 'abc', execId: '', pid: 1, exitStatus: 0, oomKilled: false } },
        'task.exited',
      ),
    );
    const pull = toDockerEvent(env({ $case: 'imagePulled', value: { name: 'busybox', digest: '' } }, 'image.pulled'));
    expect(eventFilter(['type=container'])(die)).toBe(true);
    expect(eventFilter(['type=container'])(pull)).toBe(false);
    expect(eventFilter(['event=die', 'event=pull'])(pull)).toBe(true);
    expect(eventFilter(['type=container', 'event=start'])(die)).toBe(false);
    expect(eventFilter(['container=ab'])(die)).toBe(true);
    expect(() => eventFilter(['bogus=1'])).toThrow(/invalid filter 'bogus'/);
    expect(() => eventFilter(['noequals'])).toThrow(/bad format/);
  });

  it('reads --since in docker forms', () => {
    const now = Date.parse('2026-01-02T03:04:05Z');
    expect(parseTime('10m', now).getTime()).toBe(now - 600_000);
    expect(parseTime('1h30m', now).getTime()).toBe(now - 5_400_000);
    expect(parseTime('1767323045', now).getTime()).toBe(1767323045000);
    expect(parseTime('2026-01-02T03:00:00Z', now).toISOString()).toBe('2026-01-02T03:00:00.000Z');
    expect(() => parseTime('yesterday')).toThrow(/invalid time/);
  });
});
