/**
 * The resolver of a user network, on its gateway address, port 53 (UDP), as
 * podman's aardvark-dns does: containers of the network are found by name,
 * alias and short id, answered from the database on every query (so a
 * container that comes or goes is seen at once); every other question is
 * relayed unchanged to the upstream servers (the container's --dns, else the
 * host's).
 */
import { createSocket, type RemoteInfo, type Socket } from 'node:dgram';
import type { Logger } from '@ctr/common/log';

const TYPE_A = 1;
const TYPE_AAAA = 28;
const CLASS_IN = 1;
const TTL = 600;
const UPSTREAM_TIMEOUT_MS = 5000;

export interface Question {
  name: string;
  type: number;
  qclass: number;
  /** Offset just after the question. */
  end: number;
}

/** Reads the first question of a query; undefined for anything malformed. */
export function parseQuestion(msg: Buffer): Question | undefined {
  if (msg.length < 12 || msg.readUInt16BE(4) !== 1) return undefined;
  const labels: string[] = [];
  let off = 12;
  for (;;) {
    if (off >= msg.length) return undefined;
    const len = msg[off];
    if (len === 0) break;
    if (len > 63 || off + 1 + len > msg.length) return undefined;
    labels.push(msg.toString('latin1', off + 1, off + 1 + len));
    off += 1 + len;
  }
  off += 1;
  if (off + 4 > msg.length) return undefined;
  return {
    name: labels.join('.').toLowerCase(),
    type: msg.readUInt16BE(off),
    qclass: msg.readUInt16BE(off + 2),
    end: off + 4,
  };
}

/** An answer to `query`: the question echoed, A records for `addresses` (none → NOERROR, empty). */
export function answer(query: Buffer, q: Question, addresses: string[], rcode = 0): Buffer {
  const head = Buffer.from(query.subarray(0, q.end));
  // QR, opcode kept, AA, RD kept, RA; rcode.
  const flags = query.readUInt16BE(2);
  head.writeUInt16BE(0x8000 | (flags & 0x7900) | 0x0400 | 0x0080 | rcode, 2);
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(addresses.length, 6);
  head.writeUInt16BE(0, 8);
  head.writeUInt16BE(0, 10);
  const records = addresses.map((ip) => {
    const rr = Buffer.alloc(16);
    rr.writeUInt16BE(0xc00c, 0); // pointer to the question's name
    rr.writeUInt16BE(TYPE_A, 2);
    rr.writeUInt16BE(CLASS_IN, 4);
    rr.writeUInt32BE(TTL, 6);
    rr.writeUInt16BE(4, 10);
    Buffer.from(ip.split('.').map(Number)).copy(rr, 12);
    return rr;
  });
  return Buffer.concat([head, ...records]);
}

export interface NameSource {
  /** Addresses of the network's containers called `name` (name, alias, or id prefix). */
  lookup(name: string): string[];
  /** Upstream servers for a query from `client`. */
  upstreams(client: string): string[];
}

export class NetworkResolver {
  #socket: Socket | undefined;

  constructor(
    readonly address: string,
    private readonly source: NameSource,
    private readonly log: Logger,
    private readonly port = 53,
  ) {}

  async start(): Promise<void> {
    const socket = createSocket({ type: 'udp4' });
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(this.port, this.address, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    socket.on('error', (err) => this.log.warn({ err: err.message, address: this.address }, 'dns: socket error'));
    socket.on('message', (msg, from) => this.#onQuery(msg, from));
    this.#socket = socket;
  }

  stop(): void {
    this.#socket?.close();
    this.#socket = undefined;
  }

  #onQuery(msg: Buffer, from: RemoteInfo): void {
    const q = parseQuestion(msg);
    if (!q) return;
    if (q.qclass === CLASS_IN && (q.type === TYPE_A || q.type === TYPE_AAAA)) {
      const found = this.source.lookup(q.name.replace(/\.$/, ''));
      if (found.length) {
        this.#reply(answer(msg, q, q.type === TYPE_A ? found : []), from);
        return;
      }
    }
    this.#forward(msg, q, from, this.source.upstreams(from.address));
  }

  #reply(data: Buffer, to: RemoteInfo): void {
    this.#socket?.send(data, to.port, to.address);
  }

  /** Relays the query to the first upstream that answers; SERVFAIL when none does. */
  #forward(msg: Buffer, q: Question, from: RemoteInfo, servers: string[]): void {
    const client = createSocket({ type: 'udp4' });
    let i = 0;
    let timer: NodeJS.Timeout | undefined;
    const done = (reply: Buffer) => {
      clearTimeout(timer);
      client.close();
      this.#reply(reply, from);
    };
    const next = () => {
      const server = servers[i++];
      if (!server) {
        done(answer(msg, q, [], 2));
        return;
      }
      timer = setTimeout(next, UPSTREAM_TIMEOUT_MS / Math.max(1, servers.length));
      client.send(msg, 53, server, (err) => {
        if (err) {
          clearTimeout(timer);
          next();
        }
      });
    };
    client.on('message', (reply) => done(reply));
    client.on('error', () => undefined);
    next();
  }
}
