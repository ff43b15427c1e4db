import { TestNats, waitFor } from '@ctr/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Envelope, EventBus, topicMatches, topicOf } from './events.js';

const payload = <T>(env: Envelope) => env.event?.value as unknown as T;

describe('topics', () => {
  it('derives topics from event names', () => {
    expect(topicOf('taskExited')).toBe('task.exited');
    expect(topicOf('taskExecStarted')).toBe('task.exec_started');
    expect(topicOf('imagePulled')).toBe('image.pulled');
  });
  it('matches NATS-style filters', () => {
    expect(topicMatches('task.*', 'task.exited')).toBe(true);
    expect(topicMatches('task.>', 'task.exec_started')).toBe(true);
    expect(topicMatches('>', 'image.pulled')).toBe(true);
    expect(topicMatches('task.exited', 'task.exited')).toBe(true);
    expect(topicMatches('task.*', 'image.pulled')).toBe(false);
    expect(topicMatches('task', 'task.exited')).toBe(false);
  });
});

describe('event bus on a real nats-server', () => {
  let nats: TestNats;
  const buses: EventBus[] = [];
  const connect = async (instance: string, source = 'test') => {
    const bus = await EventBus.connect({ url: nats.url, instance, source });
    buses.push(bus);
    return bus;
  };

  beforeAll(async () => {
    nats = await TestNats.start();
  });
  afterAll(async () => {
    await Promise.all(buses.map((b) => b.close(500)));
    await nats.stop();
  });

  it('delivers 1,000 events exactly once to a durable consumer across a NATS restart', async () => {
    const publisher = await connect('restart', 'publisher');
    const consumerBus = await connect('restart', 'consumer');
    const received: string[] = [];
    const envelopeIds: string[] = [];
    const sub = consumerBus.consume('restart-test', ['task.exited'], (env) => {
      envelopeIds.push(env.id);
      received.push(payload<{ containerId: string }>(env).containerId);
    });
    // Warm-up events (more than one if the consumer was slow to start) are not counted.
    await waitFor(async () => {
      await publisher.publish('taskExited', {
        containerId: 'warmup',
        execId: '',
        pid: 0,
        exitStatus: 0,
        oomKilled: false,
      });
      return received.includes('warmup');
    }, 'the consumer to be ready');

    const sent: Promise<void>[] = [];
    for (let i = 0; i < 1000; i++) {
      sent.push(
        publisher.publish('taskExited', {
          containerId: `c${i}`,
          execId: '',
          pid: i,
          exitStatus: i % 256,
          oomKilled: false,
        }),
      );
      if (i === 300) await nats.kill();
      if (i === 600) await nats.startServer();
      if (i % 50 === 0) await new Promise((r) => setTimeout(r, 5));
    }
    await Promise.all(sent);
    const counted = () => received.filter((id) => id !== 'warmup');
    await waitFor(() => counted().length >= 1000, 'all 1,000 events', { timeoutMs: 30_000 });
    // Anything redelivered late would show up now.
    await new Promise((r) => setTimeout(r, 500));
    expect(counted()).toEqual(Array.from({ length: 1000 }, (_, i) => `c${i}`));
    expect(new Set(envelopeIds).size).toBe(envelopeIds.length);
    await sub.close();
  });

  it('catches a durable consumer up on what was published while it was gone', async () => {
    const bus = await connect('catchup');
    const first: string[] = [];
    const sub1 = bus.consume('catchup-d', ['container.created'], (e) => {
      first.push(payload<{ id: string }>(e).id);
    });
    await waitFor(async () => {
      await bus.publish('containerCreated', { id: 'ready', name: '', image: '' });
      return first.includes('ready');
    }, 'consumer ready');
    await sub1.close();
    for (let i = 0; i < 20; i++) await bus.publish('containerCreated', { id: `while-down-${i}`, name: '', image: '' });
    const second: string[] = [];
    const sub2 = bus.consume('catchup-d', ['container.created'], (e) => {
      second.push(payload<{ id: string }>(e).id);
    });
    await waitFor(() => second.length >= 20, 'the missed events');
    expect(second).toEqual(Array.from({ length: 20 }, (_, i) => `while-down-${i}`));
    await sub2.close();
  });

  it('gives every subscriber every event, and replays from a time', async () => {
    const bus = await connect('fanout');
    const a: Envelope[] = [];
    const b: Envelope[] = [];
    const subA = bus.subscribe({}, (e) => void a.push(e));
    const subB = bus.subscribe({ topics: ['image.*'] }, (e) => void b.push(e));
    await new Promise((r) => setTimeout(r, 300));
    const before = new Date();
    for (let i = 0; i < 50; i++) await bus.publish('imagePulled', { name: `img${i}`, digest: '' });
    await bus.publish('networkCreated', { id: 'n1', name: 'net' });
    await waitFor(() => a.length === 51 && b.length === 50, 'both subscribers');
    expect(b.every((e) => e.topic === 'image.pulled')).toBe(true);
    expect(a.at(-1)?.topic).toBe('network.created');
    expect(a[0].source).toBe('test');
    expect(a[0].instance).toBe('fanout');

    const replayed: Envelope[] = [];
    const subC = bus.subscribe({ since: before }, (e) => void replayed.push(e));
    await waitFor(() => replayed.length === 51, 'the replay');
    await Promise.all([subA.close(), subB.close(), subC.close()]);
  });

  it('keeps two instances apart on one NATS', async () => {
    const one = await connect('one');
    const two = await connect('two');
    const seenByTwo: Envelope[] = [];
    const sub = two.subscribe({}, (e) => void seenByTwo.push(e));
    await new Promise((r) => setTimeout(r, 300));
    await one.publish('volumeCreated', { name: 'v1', driver: 'local' });
    await two.publish('volumeCreated', { name: 'v2', driver: 'local' });
    await waitFor(() => seenByTwo.length >= 1, 'instance two event');
    await new Promise((r) => setTimeout(r, 300));
    expect(seenByTwo.map((e) => payload<{ name: string }>(e).name)).toEqual(['v2']);
    expect(one.stream).not.toBe(two.stream);
    await sub.close();
  });
});
