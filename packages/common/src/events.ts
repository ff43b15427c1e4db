/**
 * The event bus: typed events on NATS subject `ctr.<instance>.events.<topic>`,
 * kept by a JetStream stream.
 *
 * - publish() never loses an event it accepted: events wait in an outbox and
 *   are sent one at a time until JetStream acknowledges them, across NATS
 *   restarts. Each carries its envelope id as the JetStream message id, so a
 *   retry after a lost acknowledgement is dropped as a duplicate by the server.
 * - consume() is a durable consumer: it resumes where it stopped after its
 *   process or NATS restarts, acknowledges after the handler returns, and
 *   drops redeliveries it has already handled.
 * - subscribe() follows live events, or replays from a time, with an
 *   ephemeral ordered consumer.
 */
import {
  AckPolicy,
  DeliverPolicy,
  type JetStreamClient,
  type JetStreamManager,
  jetstream,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
} from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { Envelope } from '@ctr/api/events/v1/events';
import { type EventCase, type EventOf, newEnvelope, topicMatches } from './event-types.js';
import { eventStream, eventSubject, eventSubjectAll } from './names.js';
import type { Logger } from './log.js';

export { Envelope, type Event, type EventCase, type EventOf, topicMatches, topicOf } from './event-types.js';

export interface EventBusOptions {
  url: string;
  instance: string;
  /** The publishing daemon's name, stamped on every envelope. */
  source: string;
  log?: Logger;
  /** How long the stream keeps events (seconds). */
  maxAgeSeconds?: number;
  /** Wait for the first connection instead of failing at once. */
  waitOnFirstConnect?: boolean;
}

export type EventHandler = (envelope: Envelope, sequence: number) => void | Promise<void>;

export interface Subscription {
  /** Resolves when the subscription has ended (closed or failed). */
  readonly done: Promise<void>;
  close(): Promise<void>;
}

interface Pending {
  envelope: Envelope;
  data: Uint8Array;
  resolve: () => void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const nanos = (seconds: number) => seconds * 1_000_000_000;

export class EventBus {
  readonly #outbox: Pending[] = [];
  #pumping = false;
  #closed = false;
  readonly #subs = new Set<Subscription>();

  private constructor(
    readonly nc: NatsConnection,
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    private readonly opts: EventBusOptions,
  ) {}

  static async connect(opts: EventBusOptions): Promise<EventBus> {
    const nc = await connect({
      servers: opts.url,
      name: `ctr-${opts.instance}-${opts.source}`,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 100,
      waitOnFirstConnect: opts.waitOnFirstConnect ?? false,
      timeout: 2000,
    });
    const jsm = await jetstreamManager(nc, { timeout: 5000 });
    const bus = new EventBus(nc, jetstream(nc, { timeout: 5000 }), jsm, opts);
    await bus.#ensureStream();
    if (opts.log) void bus.#logStatus(opts.log);
    return bus;
  }

  get instance() {
    return this.opts.instance;
  }

  get stream() {
    return eventStream(this.opts.instance);
  }

  /** Events accepted but not yet acknowledged by JetStream. */
  get pending(): number {
    return this.#outbox.length;
  }

  async #ensureStream() {
    const name = this.stream;
    const config = {
      name,
      subjects: [eventSubjectAll(this.opts.instance)],
      storage: StorageType.File,
      retention: RetentionPolicy.Limits,
      max_age: nanos(this.opts.maxAgeSeconds ?? 7 * 24 * 3600),
      duplicate_window: nanos(120),
      max_msgs: 1_000_000,
    };
    try {
      await this.jsm.streams.info(name);
    } catch {
      try {
        await this.jsm.streams.add(config);
      } catch (err) {
        // Another daemon of this instance created it first.
        await this.jsm.streams.info(name).catch(() => {
          throw err;
        });
      }
    }
  }

  async #logStatus(log: Logger) {
    for await (const s of this.nc.status()) {
      if (s.type === 'disconnect' || s.type === 'reconnect')
        log.info({ server: this.opts.url }, `events: nats ${s.type}`);
    }
  }

  /**
   * Queues an event. The returned promise resolves once JetStream stored it;
   * it never rejects for a NATS outage, the event waits and is sent later.
   */
  publish<C extends EventCase>(eventCase: C, value: EventOf<C>): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('event bus is closed'));
    const envelope = newEnvelope(this.opts.instance, this.opts.source, eventCase, value);
    const data = Envelope.encode(envelope).finish();
    return new Promise((resolve) => {
      this.#outbox.push({ envelope, data, resolve });
      void this.#pump();
    });
  }

  async #pump() {
    if (this.#pumping) return;
    this.#pumping = true;
    let backoff = 50;
    try {
      while (this.#outbox.length > 0 && !this.nc.isClosed()) {
        const next = this.#outbox[0];
        try {
          await this.js.publish(eventSubject(this.opts.instance, next.envelope.topic), next.data, {
            msgID: next.envelope.id,
            timeout: 2000,
          });
          this.#outbox.shift();
          next.resolve();
          backoff = 50;
        } catch (err) {
          this.opts.log?.debug({ err: (err as Error).message }, 'events: publish failed, retrying');
          await sleep(backoff);
          backoff = Math.min(backoff * 2, 1000);
        }
      }
    } finally {
      this.#pumping = false;
    }
  }

  /** Waits until every accepted event is stored (or the timeout passes). */
  async flush(timeoutMs = 5000): Promise<boolean> {
    const until = Date.now() + timeoutMs;
    while (this.#outbox.length > 0 && Date.now() < until) await sleep(20);
    return this.#outbox.length === 0;
  }

  /**
   * A durable consumer named `durable`: receives every event published while
   * its process was down. The handler's failure leaves the event for redelivery.
   */
  consume(durable: string, topics: string[], handler: EventHandler, opts: { deliverAll?: boolean } = {}): Subscription {
    const filter =
      topics.length === 1 ? eventSubject(this.opts.instance, topics[0]) : eventSubjectAll(this.opts.instance);
    const seen = new RecentIds(10_000);
    let stop = false;
    let current: { close(): Promise<unknown> } | undefined;
    const run = async () => {
      await this.#ensureConsumer(durable, filter, opts.deliverAll ?? false);
      while (!stop && !this.nc.isClosed()) {
        try {
          const consumer = await this.js.consumers.get(this.stream, durable);
          const messages = await consumer.consume({ max_messages: 256, idle_heartbeat: 1000, expires: 5000 });
          current = messages;
          for await (const m of messages) {
            const envelope = Envelope.decode(m.data);
            if (topics.length > 1 && !topics.some((t) => topicMatches(t, envelope.topic))) {
              m.ack();
              continue;
            }
            if (!seen.has(envelope.id)) {
              await handler(envelope, m.seq);
              seen.add(envelope.id);
            }
            m.ack();
          }
        } catch (err) {
          if (stop) break;
          this.opts.log?.debug({ err: (err as Error).message, durable }, 'events: consumer interrupted, resuming');
          await sleep(200);
        }
      }
    };
    return this.#track(run(), async () => {
      stop = true;
      await current?.close();
    });
  }

  async #ensureConsumer(durable: string, filter: string, deliverAll: boolean) {
    for (;;) {
      try {
        await this.jsm.consumers.info(this.stream, durable);
        return;
      } catch {
        try {
          await this.jsm.consumers.add(this.stream, {
            durable_name: durable,
            ack_policy: AckPolicy.Explicit,
            deliver_policy: deliverAll ? DeliverPolicy.All : DeliverPolicy.New,
            filter_subject: filter,
            ack_wait: nanos(30),
            max_ack_pending: 1000,
          });
          return;
        } catch (err) {
          if (this.nc.isClosed()) throw err;
          await sleep(200);
        }
      }
    }
  }

  /**
   * Follows events (topic filters like `task.*`; empty for all). With `since`
   * it first replays what the stream kept from that time.
   */
  subscribe(opts: { topics?: string[]; since?: Date }, handler: EventHandler): Subscription {
    const topics = opts.topics ?? [];
    const filter =
      topics.length === 1 ? eventSubject(this.opts.instance, topics[0]) : eventSubjectAll(this.opts.instance);
    let current: { close(): Promise<unknown> } | undefined;
    let stop = false;
    const run = async () => {
      const consumer = await this.js.consumers.get(this.stream, {
        filter_subjects: filter,
        ...(opts.since
          ? { deliver_policy: DeliverPolicy.StartTime, opt_start_time: opts.since.toISOString() }
          : { deliver_policy: DeliverPolicy.New }),
      });
      if (stop) return;
      const messages = await consumer.consume({ idle_heartbeat: 1000 });
      current = messages;
      if (stop) await messages.close();
      for await (const m of messages) {
        const envelope = Envelope.decode(m.data);
        if (topics.length > 1 && !topics.some((t) => topicMatches(t, envelope.topic))) continue;
        await handler(envelope, m.seq);
      }
    };
    return this.#track(run(), async () => {
      stop = true;
      await current?.close();
    });
  }

  #track(running: Promise<void>, stop: () => Promise<void>): Subscription {
    const done = running.catch((err) => {
      if (!this.#closed) this.opts.log?.warn({ err: (err as Error).message }, 'events: subscription ended');
    });
    const sub: Subscription = {
      done,
      close: async () => {
        this.#subs.delete(sub);
        await stop();
        await Promise.race([done, sleep(2000)]);
      },
    };
    this.#subs.add(sub);
    return sub;
  }

  /** Stops subscriptions, waits (bounded) for the outbox, and closes the connection. */
  async close(flushTimeoutMs = 2000): Promise<void> {
    if (this.#closed) return;
    await this.flush(flushTimeoutMs);
    this.#closed = true;
    await Promise.all([...this.#subs].map((s) => s.close()));
    await this.nc.drain().catch(() => this.nc.close());
  }
}

/** A bounded set of recently handled ids, to drop redeliveries. */
class RecentIds {
  readonly #ids = new Set<string>();
  constructor(private readonly max: number) {}
  has(id: string) {
    return this.#ids.has(id);
  }
  add(id: string) {
    this.#ids.add(id);
    if (this.#ids.size > this.max) {
      const oldest = this.#ids.values().next().value;
      if (oldest !== undefined) this.#ids.delete(oldest);
    }
  }
}
