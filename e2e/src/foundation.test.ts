/**
 * The engine as a user meets it: ctrd started from the built apps, driven
 * through ctrctl only.
 */
import { spawn } from 'node:child_process';
import { CTRCTL_MAIN, signal, TestEngine, TestNats, waitFor } from '@ctr/testkit';
import { EventBus } from '@ctr/common/events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const json = (text: string) =>
  text
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l));

describe('a user runs the engine', () => {
  let engine: TestEngine;
  beforeAll(async () => {
    engine = await TestEngine.start();
  });
  afterAll(async () => {
    await engine?.stop();
  });

  it('sees every daemon healthy', async () => {
    const r = await engine.ctrctl(['system', 'services', '--format', 'json']);
    expect(r.code).toBe(0);
    const services = json(r.stdout);
    expect(services).toHaveLength(5);
    expect(services.every((s) => s.state === 'healthy' && s.pid > 0)).toBe(true);
  });

  it('watches a crashed service come back, live in ctrctl events', async () => {
    const events = spawn(process.execPath, [CTRCTL_MAIN, 'events', '--filter', 'type=service', '--format', 'json'], {
      env: engine.env,
    });
    let out = '';
    events.stdout.on('data', (d) => (out += d));
    try {
      await new Promise((r) => setTimeout(r, 800));
      const [image] = json((await engine.ctrctl(['system', 'services', '--format', 'json'])).stdout).filter(
        (s) => s.name === 'image-service',
      );
      signal(image.pid, 'SIGKILL');
      await waitFor(
        () => json(out).some((e) => e.Action === 'restart' && e.Actor.ID === 'image-service'),
        'the restart event',
      );
      const after = json((await engine.ctrctl(['system', 'services', '--format', 'json'])).stdout).find(
        (s) => s.name === 'image-service',
      );
      expect(after.restarts).toBe(image.restarts + 1);
      expect(after.pid).not.toBe(image.pid);
      const seq = json(out).map((e) => `${e.Action} ${e.Actor.ID}`);
      expect(seq.indexOf('die image-service')).toBeLessThan(seq.indexOf('restart image-service'));
    } finally {
      events.kill('SIGINT');
    }
  });

  it('replays what happened with --since', async () => {
    const r = await engine.ctrctl(['events', '--since', '10m', '--until', '0s']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/service start image-service/);
    expect(r.stdout).toMatch(/service restart image-service \(pid=\d+, restarts=1\)/);
  });
});

describe('events on an external NATS', () => {
  let nats: TestNats;
  let engine: TestEngine;
  beforeAll(async () => {
    nats = await TestNats.start();
    engine = await TestEngine.start({ eventsUrl: nats.url });
  });
  afterAll(async () => {
    await engine?.stop();
    await nats?.stop();
  });

  it('runs no NATS of its own and publishes where a fleet tool can listen', async () => {
    const services = json((await engine.ctrctl(['system', 'services', '--format', 'json'])).stdout);
    expect(services.map((s) => s.name)).not.toContain('nats-server');
    const info = JSON.parse((await engine.ctrctl(['info', '--format', 'json'])).stdout);
    expect(info).toMatchObject({ EventsURL: nats.url, EventsEmbedded: false });

    const fleet = await EventBus.connect({ url: nats.url, instance: engine.instance, source: 'fleet' });
    const seen: string[] = [];
    const sub = fleet.subscribe({ topics: ['service.*'] }, (e) => void seen.push(e.topic));
    try {
      await new Promise((r) => setTimeout(r, 300));
      const snap = services.find((s) => s.name === 'snapshotter');
      signal(snap.pid, 'SIGKILL');
      await waitFor(() => seen.includes('service.restarted'), 'the restart on the external NATS');
    } finally {
      await sub.close();
      await fleet.close();
    }
  });
});
