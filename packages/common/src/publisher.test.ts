import { TestNats, waitFor } from '@ctr/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Envelope, EventBus } from './events.js';
import { EventPublisher } from './publisher.js';

const exited = (containerId: string, pid = 0) => ({ containerId, execId: '', pid, exitStatus: 0, oomKilled: false });

// The shim's publisher against a real nats-server, read back through the EventBus the daemons use.
describe('EventPublisher on a real nats-server', () => {
  let nats: TestNats;
  const closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    nats = await TestNats.start();
  });
  afterAll(async () => {
    for (const c of closers) await c();
    await nats.stop();
  });

  it('publishes what it took before the stream existed, and 500 events exactly once across a NATS kill', async () => {
    // The stream is the daemons' to create; until it exists, events wait.
    const publisher = EventPublisher.start({ url: nats.url, instance: 'pub', source: 'shim' });
    closers.push(() => publisher.close(500));
    const early = publisher.publish('taskExited', exited('early'));
    const bus = await EventBus.connect({ url: nats.url, instance: 'pub', source: 'test' });
    closers.push(() => bus.close(500));
    const received: Envelope[] = [];
    const sub = bus.consume('pub-test', ['task.exited'], (env) => {
      received.push(env);
    });
    closers.push(() => sub.close());
    await early;

    const sent: Promise<void>[] = [];
    for (let i = 0; i < 500; i++) {
      sent.push(publisher.publish('taskExited', exited(`c${i}`, i)));
      if (i === 150) await nats.kill();
      if (i === 300) await nats.startServer();
      if (i % 50 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all(sent);
    expect(publisher.pending).toBe(0);
    const ids = () => received.map((e) => (e.event?.value as { containerId?: string } | undefined)?.containerId);
    await waitFor(() => ids().length >= 501, 'every event', { timeoutMs: 30_000 });
    await new Promise((r) => setTimeout(r, 500));
    expect(ids()).toEqual(['early', ...Array.from({ length: 500 }, (_, i) => `c${i}`)]);
    const first = received[0];
    expect(first.source).toBe('shim');
    expect(first.instance).toBe('pub');
    expect(first.topic).toBe('task.exited');
    expect(new Set(received.map((e) => e.id)).size).toBe(received.length);
  }, 60_000);

  it('close() waits for the outbox, and refuses what comes after', async () => {
    const publisher = EventPublisher.start({ url: nats.url, instance: 'pub', source: 'shim' });
    const done = publisher.publish('taskExited', exited('last'));
    await publisher.close(5000);
    await done;
    expect(publisher.pending).toBe(0);
    await expect(publisher.publish('taskExited', exited('late'))).rejects.toThrow(/closed/);
  });
});
