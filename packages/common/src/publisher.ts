/**
 * A publish-only JetStream client on a plain socket: how the shim publishes
 * its task events.
 *
 * The NATS client library loads node:tls, node:dns and its JetStream API
 * with it, some 50 ms of CPU of a shim's boot here, which every start pays
 * (its warm spare's refill); a shim only ever publishes. This speaks the
 * little of the NATS protocol that takes: INFO, CONNECT, PING/PONG, SUB on a
 * reply inbox, HPUB with a `Nats-Msg-Id` header, and JetStream's
 * acknowledgement on the inbox. Its guarantees are the EventBus's
 * (events.ts): an accepted event waits in an outbox and is sent, one at a
 * time, until JetStream acknowledges it, across NATS restarts; a retry after
 * a lost acknowledgement carries the same message id, which the stream drops
 * as a duplicate.
 */
import { randomBytes } from 'node:crypto';
import { connect, type Socket } from 'node:net';
import { Envelope, type EventCase, type EventOf, newEnvelope } from './event-types.js';
import type { Logger } from './log.js';
import { eventSubject } from './names.js';

export interface PublisherOptions {
  /** nats://[user:pass@]host:port */
  url: string;
  instance: string;
  /** The publishing process's name, stamped on every envelope. */
  source: string;
  log?: Logger;
  /** How long a publish waits for its acknowledgement before it is sent again (ms). */
  ackTimeoutMs?: number;
}

interface Pending {
  id: string;
  subject: string;
  data: Uint8Array;
  resolve: () => void;
}

const CRLF = '\r\n';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** What came back for one publish: acknowledged, or why not (sent again later). */
type Ack = { ok: true } | { ok: false; why: string };

export class EventPublisher {
  readonly #outbox: Pending[] = [];
  readonly #inbox = `_INBOX.${randomBytes(12).toString('hex')}`;
  #socket?: Socket;
  /** Settles when the current connection has closed. */
  #gone: Promise<void> = Promise.resolve();
  #connected = false;
  #closed = false;
  #waiters: (() => void)[] = [];
  /** The reply subject awaited, and what settles it. */
  #awaiting?: { reply: string; settle: (a: Ack) => void };
  #seq = 0;
  #buf: Buffer = Buffer.alloc(0);
  #pumping = false;
  #drained: (() => void)[] = [];

  private constructor(private readonly opts: PublisherOptions) {}

  /** Starts connecting (and reconnecting, for as long as it is open); publish() may be called at once. */
  static start(opts: PublisherOptions): EventPublisher {
    const p = new EventPublisher(opts);
    void p.#connectLoop();
    return p;
  }

  /** Events accepted but not yet acknowledged. */
  get pending(): number {
    return this.#outbox.length;
  }

  /** Queues an event; resolves once JetStream stored it (never rejects for a NATS outage). */
  publish<C extends EventCase>(eventCase: C, value: EventOf<C>): Promise<void> {
    if (this.#closed) return Promise.reject(new Error('event publisher is closed'));
    const envelope = newEnvelope(this.opts.instance, this.opts.source, eventCase, value);
    const data = Envelope.encode(envelope).finish();
    return new Promise((resolve) => {
      this.#outbox.push({ id: envelope.id, subject: eventSubject(this.opts.instance, envelope.topic), data, resolve });
      void this.#pump();
    });
  }

  /** Waits up to `timeoutMs` for the outbox to empty, then disconnects. */
  async close(timeoutMs = 2000): Promise<void> {
    if (this.#closed) return;
    if (this.#outbox.length) {
      await Promise.race([new Promise<void>((r) => this.#drained.push(r)), sleep(timeoutMs)]);
    }
    this.#closed = true;
    this.#awaiting?.settle({ ok: false, why: 'closed' });
    for (const w of this.#waiters.splice(0)) w();
    this.#socket?.destroy();
  }

  async #connectLoop() {
    let backoff = 100;
    while (!this.#closed) {
      const up = await this.#connectOnce().catch((err: Error) => {
        this.opts.log?.debug({ err: err.message }, 'events: cannot connect to nats');
        return false;
      });
      if (up) {
        backoff = 100;
        this.opts.log?.debug({ server: this.opts.url }, 'events: connected');
        for (const w of this.#waiters.splice(0)) w();
        void this.#pump();
        // Until the connection goes.
        await this.#gone;
        this.#connected = false;
        this.#awaiting?.settle({ ok: false, why: 'disconnected' });
        if (!this.#closed) this.opts.log?.info({ server: this.opts.url }, 'events: nats disconnect');
      }
      if (this.#closed) return;
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 1000);
    }
  }

  /** One connection: INFO in, CONNECT and SUB out, then PONG to our PING says we are in. */
  #connectOnce(): Promise<boolean> {
    const url = new URL(this.opts.url);
    return new Promise((resolve, reject) => {
      const socket = connect({ host: url.hostname, port: Number(url.port || 4222) });
      this.#socket = socket;
      this.#gone = new Promise<void>((r) => socket.once('close', () => r()));
      this.#buf = Buffer.alloc(0);
      let greeted = false;
      let settled = false;
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        socket.destroy();
        reject(err);
      };
      const timer = setTimeout(() => fail(new Error('nats did not answer')), 2000);
      socket.once('error', fail);
      socket.on('error', () => undefined);
      socket.once('close', () => fail(new Error('connection closed')));
      socket.on('data', (chunk: Buffer) => {
        this.#buf = this.#buf.length ? Buffer.concat([this.#buf, chunk]) : chunk;
        try {
          this.#parse((op, rest) => {
            if (op === 'INFO' && !greeted) {
              greeted = true;
              const connectOpts: Record<string, unknown> = {
                verbose: false,
                pedantic: false,
                lang: 'ctr',
                version: '1',
                protocol: 1,
                headers: true,
                no_responders: true,
                name: `ctr-${this.opts.instance}-${this.opts.source}`,
              };
              if (url.username) {
                connectOpts.user = decodeURIComponent(url.username);
                connectOpts.pass = decodeURIComponent(url.password);
              }
              socket.write(`CONNECT ${JSON.stringify(connectOpts)}${CRLF}SUB ${this.#inbox}.* 1${CRLF}PING${CRLF}`);
            } else if (op === 'PONG' && !settled) {
              settled = true;
              clearTimeout(timer);
              this.#connected = true;
              resolve(true);
            } else if (op === '-ERR') {
              this.opts.log?.warn({ error: rest }, 'events: nats refused');
              if (!settled) fail(new Error(`nats: ${rest}`));
            }
          });
        } catch (err) {
          this.opts.log?.warn({ err }, 'events: bad data from nats');
          socket.destroy();
        }
      });
    });
  }

  /** Reads whole protocol messages off the buffer; MSG and HMSG settle the publish they answer. */
  #parse(onOp: (op: string, rest: string) => void) {
    for (;;) {
      const eol = this.#buf.indexOf(CRLF);
      if (eol < 0) return;
      const line = this.#buf.subarray(0, eol).toString('latin1');
      const [op, ...args] = line.split(' ');
      const upper = op.toUpperCase();
      if (upper === 'MSG' || upper === 'HMSG') {
        // MSG <subject> <sid> [reply] <bytes>; HMSG <subject> <sid> [reply] <header bytes> <total bytes>
        const total = Number(args[args.length - 1]);
        const headerBytes = upper === 'HMSG' ? Number(args[args.length - 2]) : 0;
        if (this.#buf.length < eol + 2 + total + 2) return;
        const body = this.#buf.subarray(eol + 2, eol + 2 + total);
        this.#buf = this.#buf.subarray(eol + 2 + total + 2);
        this.#reply(args[0], body.subarray(0, headerBytes).toString('latin1'), body.subarray(headerBytes));
        continue;
      }
      this.#buf = this.#buf.subarray(eol + 2);
      if (upper === 'PING') this.#socket?.write(`PONG${CRLF}`);
      else onOp(upper, args.join(' '));
    }
  }

  #reply(subject: string, headers: string, payload: Buffer) {
    const a = this.#awaiting;
    if (!a || a.reply !== subject) return; // the answer to a publish that timed out
    // No responders (no stream takes the subject yet) comes as a 503 status in the headers.
    const status = headers.match(/^NATS\/1\.0 (\d{3})/)?.[1];
    if (status) {
      a.settle({ ok: false, why: `status ${status}` });
      return;
    }
    try {
      const ack = JSON.parse(payload.toString('utf8')) as { stream?: string; error?: { description?: string } };
      a.settle(ack.stream && !ack.error ? { ok: true } : { ok: false, why: ack.error?.description ?? 'no stream' });
    } catch {
      a.settle({ ok: false, why: 'an acknowledgement that is not JSON' });
    }
  }

  async #pump() {
    if (this.#pumping) return;
    this.#pumping = true;
    let backoff = 50;
    try {
      while (this.#outbox.length && !this.#closed) {
        if (!this.#connected) {
          await new Promise<void>((r) => this.#waiters.push(r));
          continue;
        }
        const next = this.#outbox[0];
        const ack = await this.#send(next);
        if (ack.ok) {
          this.#outbox.shift();
          next.resolve();
          backoff = 50;
        } else {
          this.opts.log?.debug({ why: ack.why }, 'events: publish failed, retrying');
          await sleep(backoff);
          backoff = Math.min(backoff * 2, 1000);
        }
      }
      if (!this.#outbox.length) for (const d of this.#drained.splice(0)) d();
    } finally {
      this.#pumping = false;
    }
  }

  #send(p: Pending): Promise<Ack> {
    const reply = `${this.#inbox}.${++this.#seq}`;
    const headers = `NATS/1.0${CRLF}Nats-Msg-Id: ${p.id}${CRLF}${CRLF}`;
    const hlen = Buffer.byteLength(headers);
    return new Promise<Ack>((resolve) => {
      const timer = setTimeout(
        () => settle({ ok: false, why: 'no acknowledgement in time' }),
        this.opts.ackTimeoutMs ?? 2000,
      );
      const settle = (a: Ack) => {
        if (this.#awaiting?.reply === reply) this.#awaiting = undefined;
        clearTimeout(timer);
        resolve(a);
      };
      this.#awaiting = { reply, settle };
      this.#socket?.write(
        Buffer.concat([
          Buffer.from(`HPUB ${p.subject} ${reply} ${hlen} ${hlen + p.data.length}${CRLF}${headers}`, 'latin1'),
          p.data,
          Buffer.from(CRLF),
        ]),
      );
    });
  }
}
