/**
 * HTTP/2 over a plain socket (h2c with prior knowledge, RFC 9113), with its
 * own HPACK (RFC 7541): what grpc-client.ts (ctrctl) and grpc-server.ts (the
 * shim) speak gRPC on. One H2Session plays either part.
 *
 * node:http2 loads node:tls with it, some 30 ms of a CLI's start here (a
 * bare Node starts in 30), which every ctrctl command paid before its first
 * byte, and every shim's boot too. A few calls on one unix socket need little
 * of HTTP/2: streams, flow control both ways, SETTINGS, PING, GOAWAY and
 * RST_STREAM. Left out: server push (refused in our SETTINGS), priorities
 * (ignored, as RFC 9113 allows) and TLS.
 *
 * Headers are sent as literals that are never added to a table (the peer's
 * table size does not matter then); the peer's are decoded in full: static
 * and dynamic tables, Huffman strings.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

enum Frame {
  DATA = 0,
  HEADERS = 1,
  PRIORITY = 2,
  RST_STREAM = 3,
  SETTINGS = 4,
  PUSH_PROMISE = 5,
  PING = 6,
  GOAWAY = 7,
  WINDOW_UPDATE = 8,
  CONTINUATION = 9,
}

const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY_FLAG = 0x20;

const SETTING_ENABLE_PUSH = 0x2;
const SETTING_INITIAL_WINDOW_SIZE = 0x4;
const SETTING_MAX_FRAME_SIZE = 0x5;

export const H2_CANCEL = 0x8;
const PROTOCOL_ERROR = 0x1;
const REFUSED_STREAM = 0x7;
const FLOW_CONTROL_ERROR = 0x3;
const COMPRESSION_ERROR = 0x9;

const DEFAULT_WINDOW = 65_535;
/** What we let a server send ahead of our reading: per stream, and on the whole connection. */
const STREAM_WINDOW = 1 << 20;
const CONNECTION_WINDOW = 16 << 20;
const MAX_WINDOW = 2 ** 31 - 1;

/** A header list as node:http2 gives it: names lower case, a repeated name's values in an array. */
export type H2Headers = Record<string, string | string[] | undefined>;

/** An error of the connection or of one stream, with the HTTP/2 error code when the peer sent one. */
export class H2Error extends Error {
  constructor(
    message: string,
    readonly code?: string,
    readonly h2Code?: number,
  ) {
    super(message);
  }
}

// ---- HPACK ----

/** RFC 7541 Appendix A. */
const STATIC_TABLE: [string, string][] = [
  [':authority', ''],
  [':method', 'GET'],
  [':method', 'POST'],
  [':path', '/'],
  [':path', '/index.html'],
  [':scheme', 'http'],
  [':scheme', 'https'],
  [':status', '200'],
  [':status', '204'],
  [':status', '206'],
  [':status', '304'],
  [':status', '400'],
  [':status', '404'],
  [':status', '500'],
  ['accept-charset', ''],
  ['accept-encoding', 'gzip, deflate'],
  ...(
    'accept-language accept-ranges accept access-control-allow-origin age allow authorization cache-control ' +
    'content-disposition content-encoding content-language content-length content-location content-range ' +
    'content-type cookie date etag expect expires from host if-match if-modified-since if-none-match if-range ' +
    'if-unmodified-since last-modified link location max-forwards proxy-authenticate proxy-authorization range ' +
    'referer refresh retry-after server set-cookie strict-transport-security transfer-encoding user-agent vary ' +
    'via www-authenticate'
  )
    .split(' ')
    .map((name): [string, string] => [name, '']),
];

/**
 * The Huffman code of RFC 7541 Appendix B is canonical, so its code lengths
 * (symbols 0-255, then EOS) are all it takes: one letter each, 'A' for 5 bits.
 */
const HUFFMAN_LENGTHS =
  'ISXXXXXXXTZXXZXXXXXXXXZXXXXXXXXXBFFHIBDGFFDGDBBBAAABBBBBBBCDKBHFIBCCCCCCCCCCCCCCCCCCCCCCDCDIOIJBKABABABBBACCBBBABCBAABCCCCCKGJIXPRPPRRRSRSSSSSTSTTRSTSSSSQRSRSSTRQPRRSSQSRRTQRSSQQRQSRSSPRRRSRRSVVPORSRUVVVWWVTUOQVWWVWTQQVVXWWWPTPQRQQSRRUUTTVSVWVVWWWWWXWWWWWVZ';

/**
 * The code as canonical decoding needs it (as zlib's puff.c decodes
 * deflate's): how many codes each length has, and the symbols in code
 * order. Built on first use, from the lengths alone, in two passes over the
 * 257 symbols: only our shim's server sends no Huffman strings, and a
 * ctrctl call's first decode took 1.1 ms here with the decoding tree built
 * before, 0.5 ms with this.
 */
let huffman: { count: Int32Array; symbols: Int32Array } | undefined;
const buildHuffman = () => {
  const count = new Int32Array(31); // codes of 5 to 30 bits
  for (let s = 0; s < 257; s++) count[HUFFMAN_LENGTHS.charCodeAt(s) - 60]++;
  const next = new Int32Array(31); // where each length's first symbol goes
  for (let len = 1; len < 30; len++) next[len + 1] = next[len] + count[len];
  const symbols = new Int32Array(257);
  for (let s = 0; s < 257; s++) symbols[next[HUFFMAN_LENGTHS.charCodeAt(s) - 60]++] = s;
  return { count, symbols };
};

function huffmanDecode(bytes: Buffer): string {
  huffman ??= buildHuffman();
  const { count, symbols } = huffman;
  const out: number[] = [];
  // The code read so far (len bits), the first code of that length, and the index of its symbol.
  let code = 0;
  let first = 0;
  let index = 0;
  let len = 0;
  let ones = true;
  for (const byte of bytes) {
    for (let bit = 7; bit >= 0; bit--) {
      const b = (byte >> bit) & 1;
      code |= b;
      len++;
      ones &&= b === 1;
      const n = count[len];
      if (code - first < n) {
        const s = symbols[index + code - first];
        if (s === 256) throw new H2Error('HPACK: EOS in a string', undefined, COMPRESSION_ERROR);
        out.push(s);
        code = first = index = len = 0;
        ones = true;
        continue;
      }
      if (len === 30) throw new H2Error('HPACK: bad Huffman code', undefined, COMPRESSION_ERROR);
      index += n;
      first = (first + n) << 1;
      code <<= 1;
    }
  }
  // What is left must be a prefix of EOS (all ones) of fewer than 8 bits.
  if (len > 7 || !ones) throw new H2Error('HPACK: bad Huffman padding', undefined, COMPRESSION_ERROR);
  return Buffer.from(out).toString('latin1');
}

/** Decodes header blocks in order; a connection's one decoder, as its dynamic table is shared. */
export class HpackDecoder {
  #table: [string, string][] = [];
  #size = 0;
  #max = 4096;

  decode(block: Buffer): [string, string][] {
    const out: [string, string][] = [];
    let at = 0;
    const integer = (prefixBits: number): number => {
      const mask = (1 << prefixBits) - 1;
      let value = block[at++] & mask;
      if (value < mask) return value;
      let shift = 0;
      for (;;) {
        if (at >= block.length || shift > 28) throw new H2Error('HPACK: bad integer', undefined, COMPRESSION_ERROR);
        const b = block[at++];
        value += (b & 0x7f) * 2 ** shift;
        shift += 7;
        if (!(b & 0x80)) return value;
      }
    };
    const string = (): string => {
      if (at >= block.length) throw new H2Error('HPACK: truncated block', undefined, COMPRESSION_ERROR);
      const huff = (block[at] & 0x80) !== 0;
      const len = integer(7);
      if (at + len > block.length) throw new H2Error('HPACK: truncated string', undefined, COMPRESSION_ERROR);
      const raw = block.subarray(at, at + len);
      at += len;
      return huff ? huffmanDecode(raw) : raw.toString('latin1');
    };
    const entry = (index: number): [string, string] => {
      const e = index <= STATIC_TABLE.length ? STATIC_TABLE[index - 1] : this.#table[index - STATIC_TABLE.length - 1];
      if (!index || !e) throw new H2Error(`HPACK: no entry ${index}`, undefined, COMPRESSION_ERROR);
      return e;
    };
    while (at < block.length) {
      const b = block[at];
      if (b & 0x80) {
        out.push(entry(integer(7)));
      } else if (b & 0x40) {
        const index = integer(6);
        const name = index ? entry(index)[0] : string();
        const header: [string, string] = [name, string()];
        out.push(header);
        this.#add(header);
      } else if (b & 0x20) {
        const size = integer(5);
        if (size > 4096) throw new H2Error('HPACK: table size over the limit', undefined, COMPRESSION_ERROR);
        this.#max = size;
        this.#evict();
      } else {
        // Without indexing (0000) or never indexed (0001): the same to a client.
        const index = integer(4);
        const name = index ? entry(index)[0] : string();
        out.push([name, string()]);
      }
    }
    return out;
  }

  #add(header: [string, string]) {
    this.#table.unshift(header);
    this.#size += header[0].length + header[1].length + 32;
    this.#evict();
  }

  #evict() {
    while (this.#size > this.#max) {
      const e = this.#table.pop();
      if (!e) break;
      this.#size -= e[0].length + e[1].length + 32;
    }
  }
}

function encodeInteger(out: number[], value: number, prefixBits: number, first: number) {
  const mask = (1 << prefixBits) - 1;
  if (value < mask) {
    out.push(first | value);
    return;
  }
  out.push(first | mask);
  value -= mask;
  while (value >= 0x80) {
    out.push((value % 0x80) | 0x80);
    value = Math.floor(value / 0x80);
  }
  out.push(value);
}

/** A header block of literals never added to a table, without Huffman. */
export function hpackEncode(headers: Record<string, string>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of Object.entries(headers)) {
    const n = Buffer.from(name.toLowerCase(), 'latin1');
    const v = Buffer.from(value, 'latin1');
    const head: number[] = [0];
    encodeInteger(head, n.length, 7, 0);
    parts.push(Buffer.from(head), n);
    const vlen: number[] = [];
    encodeInteger(vlen, v.length, 7, 0);
    parts.push(Buffer.from(vlen), v);
  }
  return Buffer.concat(parts);
}

function toHeaders(list: [string, string][]): H2Headers {
  const h: H2Headers = {};
  for (const [k, v] of list) {
    const had = h[k];
    h[k] = had === undefined ? v : Array.isArray(had) ? [...had, v] : [had, v];
  }
  return h;
}

// ---- frames ----

function frame(type: Frame, flags: number, streamId: number, payload: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.allocUnsafe(9 + payload.length);
  out.writeUIntBE(payload.length, 0, 3);
  out[3] = type;
  out[4] = flags;
  out.writeUInt32BE(streamId & 0x7fffffff, 5);
  payload.copy(out, 9);
  return out;
}

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

function settingsPayload(settings: [number, number][]): Buffer {
  const b = Buffer.allocUnsafe(6 * settings.length);
  settings.forEach(([id, value], i) => {
    b.writeUInt16BE(id, 6 * i);
    b.writeUInt32BE(value, 6 * i + 2);
  });
  return b;
}

/** The payload of a DATA or HEADERS frame without its padding (and HEADERS' priority fields). */
function unpad(flags: number, payload: Buffer, priority: boolean): Buffer {
  let start = 0;
  let end = payload.length;
  if (flags & PADDED) {
    if (!payload.length) throw new H2Error('a padded frame without its pad length', undefined, PROTOCOL_ERROR);
    end -= payload[0];
    start = 1;
  }
  if (priority) start += 5;
  if (end < start) throw new H2Error('padding longer than the frame', undefined, PROTOCOL_ERROR);
  return payload.subarray(start, end);
}

interface Pending {
  data: Buffer;
  end: boolean;
  /** A header block (a response's headers or trailers), sent in its place among the DATA. */
  headers?: Buffer;
  cb?: () => void;
}

/**
 * One request/response exchange. Events, as node:http2's streams: a
 * client's 'response' (the first headers) and 'trailers'; both sides'
 * 'data', 'end' (the peer's END_STREAM, after its data), 'reset' (the peer's
 * RST_STREAM, with its code), 'error', and 'close' once it is over.
 */
export class H2Stream extends EventEmitter {
  /** Bytes we may still send: the server's window for this stream. */
  sendWindow: number;
  /** Bytes received and not yet credited back to the server. */
  #unacked = 0;
  #paused = false;
  #gotHeaders = false;
  #remoteEnded = false;
  #localEnded = false;
  closed = false;
  readonly queue: Pending[] = [];

  constructor(
    readonly id: number,
    private readonly session: H2Session,
    sendWindow: number,
  ) {
    super();
    this.sendWindow = sendWindow;
  }

  /** Queues `data` in DATA frames as the windows allow; `cb` once all of it is on the socket. */
  write(data: Buffer, cb?: () => void): boolean {
    if (this.closed || this.#localEnded) {
      cb?.();
      return false;
    }
    this.queue.push({ data, end: false, cb });
    this.session.flush();
    return true;
  }

  /** Our side is done (an empty DATA frame with END_STREAM, after what is queued). */
  end(): void {
    if (this.closed || this.#localEnded) return;
    this.#localEnded = true;
    this.queue.push({ data: Buffer.alloc(0), end: true });
    this.session.flush();
  }

  /** A server's response headers (before any data); with `endStream`, all it sends (gRPC's trailers-only). */
  respond(headers: Record<string, string>, endStream = false): void {
    if (this.closed || this.#localEnded) return;
    if (endStream) this.#localEnded = true;
    this.queue.push({ data: Buffer.alloc(0), end: endStream, headers: hpackEncode(headers) });
    this.session.flush();
  }

  /** A server's trailers, after what is queued: its side ends with them. */
  sendTrailers(headers: Record<string, string>): void {
    this.respond(headers, true);
  }

  /** Ends the stream at once (RST_STREAM with `code`, CANCEL by default). */
  close(code = H2_CANCEL): void {
    if (this.closed) return;
    this.session.reset(this, code);
    this.finish();
  }

  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    if (!this.#paused) return;
    this.#paused = false;
    this.#credit();
  }

  onHeaders(headers: H2Headers, endStream: boolean) {
    const first = !this.#gotHeaders;
    this.#gotHeaders = true;
    // A server's request headers were given with its 'stream' event; a client's trailers are of no use to us.
    if (this.session.role === 'client') this.emit(first ? 'response' : 'trailers', headers);
    if (endStream) this.onRemoteEnd();
  }

  onData(data: Buffer, frameLength: number, endStream: boolean) {
    this.#unacked += frameLength;
    if (data.length) this.emit('data', data);
    if (!this.#paused) this.#credit();
    if (endStream) this.onRemoteEnd();
  }

  #credit() {
    if (this.closed || this.#remoteEnded || this.#unacked < STREAM_WINDOW / 2) return;
    this.session.windowUpdate(this.id, this.#unacked);
    this.#unacked = 0;
  }

  onRemoteEnd() {
    if (this.#remoteEnded) return;
    this.#remoteEnded = true;
    // Both sides are done: closed before 'end', so a listener does not reset what is over.
    const over = this.#localEnded && !this.queue.length;
    if (over) this.closed = true;
    this.emit('end');
    if (over) this.#close();
  }

  /** Our END_STREAM went out. */
  onLocalEndSent() {
    if (this.#remoteEnded) this.finish();
    else if (this.session.role === 'server') {
      // The response is complete: the client need send nothing more (RST_STREAM NO_ERROR, RFC 9113 8.1).
      this.session.reset(this, 0);
      this.finish();
    }
  }

  fail(err: H2Error) {
    if (this.closed) return;
    // A server's call learns of it from 'close' alone.
    if (this.listenerCount('error')) this.emit('error', err);
    this.finish();
  }

  finish() {
    if (this.closed) return;
    this.closed = true;
    this.#close();
  }

  #close() {
    for (const p of this.queue.splice(0)) p.cb?.();
    this.session.forget(this);
    this.emit('close');
  }
}

/**
 * An HTTP/2 connection on `socket` (connected or connecting). Events:
 * 'error' (the connection failed), 'goaway', 'close'.
 */
export class H2Session extends EventEmitter {
  readonly #socket: Socket;
  readonly #streams = new Map<number, H2Stream>();
  readonly #decoder = new HpackDecoder();
  #nextId = 1;
  /** The highest stream id a client opened (a server's). */
  #lastPeerId = 0;
  /** The client's preface, still to be read (a server's). */
  #prefaceLeft: number;
  #inbox: Buffer[] = [];
  #inboxLength = 0;
  /** A header block split over CONTINUATION frames: its stream, END_STREAM and the pieces so far. */
  #continuing?: { streamId: number; endStream: boolean; pieces: Buffer[] };
  #peerInitialWindow = DEFAULT_WINDOW;
  #peerMaxFrame = 16_384;
  #sendWindow = DEFAULT_WINDOW;
  #recvUnacked = 0;
  #blocked = false;
  #closing = false;
  #goneAway = false;
  closed = false;
  destroyed = false;

  constructor(
    socket: Socket,
    readonly role: 'client' | 'server' = 'client',
  ) {
    super();
    this.#socket = socket;
    this.#prefaceLeft = role === 'server' ? PREFACE.length : 0;
    socket.setNoDelay?.(true);
    socket.write(
      Buffer.concat([
        role === 'client' ? PREFACE : Buffer.alloc(0),
        frame(
          Frame.SETTINGS,
          0,
          0,
          settingsPayload([
            [SETTING_ENABLE_PUSH, 0],
            [SETTING_INITIAL_WINDOW_SIZE, STREAM_WINDOW],
          ]),
        ),
        frame(Frame.WINDOW_UPDATE, 0, 0, u32(CONNECTION_WINDOW - DEFAULT_WINDOW)),
      ]),
    );
    socket.on('data', (chunk: Buffer) => this.#receive(chunk));
    socket.on('drain', () => {
      this.#blocked = false;
      this.flush();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => this.#destroy(new H2Error(err.message, err.code), true));
    socket.on('close', () => this.#destroy(new H2Error('the connection was closed', 'ECONNRESET'), false));
  }

  /** Opens a stream with a request's headers; `endStream` when there is no body. */
  request(headers: Record<string, string>): H2Stream {
    if (this.closed || this.#closing || this.#goneAway) {
      const s = new H2Stream(0, this, 0);
      queueMicrotask(() => s.fail(new H2Error('the session is closed', 'ERR_HTTP2_INVALID_SESSION')));
      return s;
    }
    const id = this.#nextId;
    this.#nextId += 2;
    const stream = new H2Stream(id, this, this.#peerInitialWindow);
    this.#streams.set(id, stream);
    this.#writeHeaders(id, hpackEncode({ ':scheme': 'http', ':authority': 'localhost', ...headers }), false);
    return stream;
  }

  /** One HEADERS frame, CONTINUATION for the rest of a (rare) block over the frame size. */
  #writeHeaders(id: number, block: Buffer, endStream: boolean) {
    for (let off = 0, first = true; first || off < block.length; first = false) {
      const piece = block.subarray(off, off + this.#peerMaxFrame);
      off += piece.length;
      const flags = (off >= block.length ? END_HEADERS : 0) | (first && endStream ? END_STREAM : 0);
      this.#write(frame(first ? Frame.HEADERS : Frame.CONTINUATION, flags, id, piece));
    }
  }

  /** Sends what the streams have queued, as far as the windows and the socket allow. */
  flush(): void {
    if (this.closed) return;
    for (const stream of this.#streams.values()) {
      while (stream.queue.length && !this.#blocked) {
        const p = stream.queue[0];
        if (p.headers) {
          stream.queue.shift();
          this.#writeHeaders(stream.id, p.headers, p.end);
          if (p.end) {
            stream.onLocalEndSent();
            break;
          }
          continue;
        }
        if (p.end) {
          stream.queue.shift();
          this.#write(frame(Frame.DATA, END_STREAM, stream.id));
          stream.onLocalEndSent();
          break;
        }
        const n = Math.min(p.data.length, stream.sendWindow, this.#sendWindow, this.#peerMaxFrame);
        if (n <= 0 && p.data.length) break;
        const piece = p.data.subarray(0, n);
        p.data = p.data.subarray(n);
        stream.sendWindow -= n;
        this.#sendWindow -= n;
        const done = !p.data.length;
        if (done) stream.queue.shift();
        this.#write(frame(Frame.DATA, 0, stream.id, piece), done ? p.cb : undefined);
      }
    }
  }

  #write(buf: Buffer, cb?: () => void) {
    if (!this.#socket.write(buf, cb ? () => cb() : undefined)) this.#blocked = true;
  }

  windowUpdate(streamId: number, n: number) {
    if (!this.closed) this.#write(frame(Frame.WINDOW_UPDATE, 0, streamId, u32(n)));
  }

  reset(stream: H2Stream, code: number) {
    if (!this.closed && stream.id) this.#write(frame(Frame.RST_STREAM, 0, stream.id, u32(code)));
  }

  forget(stream: H2Stream) {
    this.#streams.delete(stream.id);
    if (this.#closing && !this.#streams.size) this.#end();
  }

  /** Closes once the streams in flight are done; a server says so first (GOAWAY), so no new stream is lost. */
  close(): void {
    if (this.closed || this.#closing) return;
    this.#closing = true;
    if (this.role === 'server') this.#write(frame(Frame.GOAWAY, 0, 0, Buffer.concat([u32(this.#lastPeerId), u32(0)])));
    if (!this.#streams.size) this.#end();
  }

  /** Ends the connection now: its streams fail. */
  destroy(): void {
    this.#destroy(new H2Error('the connection was closed', 'ECONNRESET'), false);
  }

  #end() {
    if (this.closed) return;
    this.closed = true;
    this.#socket.end();
    this.emit('close');
  }

  #destroy(err: H2Error, isError: boolean) {
    const wasClosed = this.closed;
    this.closed = true;
    this.destroyed = true;
    for (const s of [...this.#streams.values()]) s.fail(err);
    this.#socket.destroy();
    if (isError && this.listenerCount('error')) this.emit('error', err);
    if (!wasClosed) this.emit('close');
  }

  /** A connection error: GOAWAY with `code`, then every stream fails. */
  #protocolError(err: H2Error) {
    const lastId = this.role === 'server' ? this.#lastPeerId : 0;
    this.#write(frame(Frame.GOAWAY, 0, 0, Buffer.concat([u32(lastId), u32(err.h2Code ?? PROTOCOL_ERROR)])));
    this.#destroy(err, true);
  }

  #receive(chunk: Buffer) {
    if (this.#prefaceLeft) {
      const n = Math.min(this.#prefaceLeft, chunk.length);
      const at = PREFACE.length - this.#prefaceLeft;
      if (!chunk.subarray(0, n).equals(PREFACE.subarray(at, at + n))) {
        this.#destroy(new H2Error('not an HTTP/2 client preface', 'ERR_HTTP2_ERROR'), true);
        return;
      }
      this.#prefaceLeft -= n;
      chunk = chunk.subarray(n);
      if (!chunk.length) return;
    }
    this.#inbox.push(chunk);
    this.#inboxLength += chunk.length;
    while (this.#inboxLength >= 9 && !this.destroyed) {
      const buf = this.#inbox.length === 1 ? this.#inbox[0] : Buffer.concat(this.#inbox);
      this.#inbox = [buf];
      const length = buf.readUIntBE(0, 3);
      if (this.#inboxLength < 9 + length) return;
      const type = buf[3];
      const flags = buf[4];
      const streamId = buf.readUInt32BE(5) & 0x7fffffff;
      const payload = buf.subarray(9, 9 + length);
      const rest = buf.subarray(9 + length);
      this.#inbox = rest.length ? [rest] : [];
      this.#inboxLength = rest.length;
      try {
        this.#frame(type, flags, streamId, payload);
      } catch (err) {
        this.#protocolError(err instanceof H2Error ? err : new H2Error((err as Error).message));
        return;
      }
    }
  }

  #frame(type: number, flags: number, streamId: number, payload: Buffer) {
    if (this.#continuing && type !== Frame.CONTINUATION)
      throw new H2Error('a header block was interrupted', undefined, PROTOCOL_ERROR);
    switch (type) {
      case Frame.DATA: {
        // Counted against the connection's window whatever became of its stream; credited back in bulk.
        this.#recvUnacked += payload.length;
        if (this.#recvUnacked >= CONNECTION_WINDOW / 2) {
          this.windowUpdate(0, this.#recvUnacked);
          this.#recvUnacked = 0;
        }
        this.#streams.get(streamId)?.onData(unpad(flags, payload, false), payload.length, (flags & END_STREAM) !== 0);
        return;
      }
      case Frame.HEADERS: {
        const block = unpad(flags, payload, (flags & PRIORITY_FLAG) !== 0);
        if (flags & END_HEADERS) this.#headers(streamId, block, (flags & END_STREAM) !== 0);
        else this.#continuing = { streamId, endStream: (flags & END_STREAM) !== 0, pieces: [block] };
        return;
      }
      case Frame.CONTINUATION: {
        const c = this.#continuing;
        if (!c || c.streamId !== streamId) throw new H2Error('an unexpected CONTINUATION', undefined, PROTOCOL_ERROR);
        c.pieces.push(payload);
        if (flags & END_HEADERS) {
          this.#continuing = undefined;
          this.#headers(streamId, Buffer.concat(c.pieces), c.endStream);
        }
        return;
      }
      case Frame.RST_STREAM: {
        const code = payload.length >= 4 ? payload.readUInt32BE(0) : 0;
        const s = this.#streams.get(streamId);
        if (!s) return;
        // No status came and none will: the caller makes of that what gRPC says (the stream ended without one).
        s.emit('reset', code);
        s.finish();
        return;
      }
      case Frame.SETTINGS: {
        if (flags & ACK) return;
        for (let i = 0; i + 6 <= payload.length; i += 6) {
          const id = payload.readUInt16BE(i);
          const value = payload.readUInt32BE(i + 2);
          if (id === SETTING_INITIAL_WINDOW_SIZE) {
            if (value > MAX_WINDOW) throw new H2Error('initial window too large', undefined, FLOW_CONTROL_ERROR);
            const delta = value - this.#peerInitialWindow;
            this.#peerInitialWindow = value;
            for (const s of this.#streams.values()) s.sendWindow += delta;
          } else if (id === SETTING_MAX_FRAME_SIZE) {
            this.#peerMaxFrame = Math.min(value, 1 << 20);
          }
          // HEADER_TABLE_SIZE does not matter to us: our encoder adds nothing to the peer's table.
        }
        this.#write(frame(Frame.SETTINGS, ACK, 0));
        this.flush();
        return;
      }
      case Frame.PING: {
        if (!(flags & ACK)) this.#write(frame(Frame.PING, ACK, 0, payload));
        return;
      }
      case Frame.GOAWAY: {
        const lastId = payload.readUInt32BE(0) & 0x7fffffff;
        this.#goneAway = true;
        this.emit('goaway');
        // Streams the server never saw fail now (a caller may retry them on a new connection); the rest finish.
        for (const s of [...this.#streams.values()]) {
          if (s.id > lastId) s.fail(new H2Error('the server went away before this stream', 'ERR_HTTP2_GOAWAY_SESSION'));
        }
        if (!this.#streams.size) this.#end();
        else this.#closing = true;
        return;
      }
      case Frame.WINDOW_UPDATE: {
        const n = payload.readUInt32BE(0) & 0x7fffffff;
        if (streamId === 0) this.#sendWindow += n;
        else {
          const s = this.#streams.get(streamId);
          if (s) s.sendWindow += n;
        }
        this.flush();
        return;
      }
      case Frame.PUSH_PROMISE:
        throw new H2Error('a PUSH_PROMISE, which our SETTINGS refused', undefined, PROTOCOL_ERROR);
      default:
        // PRIORITY and frame types we do not know are ignored, as RFC 9113 says.
        return;
    }
  }

  #headers(streamId: number, block: Buffer, endStream: boolean) {
    // Decoded even for a stream we no longer track: the table is the connection's.
    const headers = toHeaders(this.#decoder.decode(block));
    const known = this.#streams.get(streamId);
    if (known || this.role === 'client') {
      known?.onHeaders(headers, endStream);
      return;
    }
    // A server's new stream: a client's ids are odd and rise; a lower one is a stream that is over.
    if (streamId % 2 === 0) throw new H2Error(`a client opened stream ${streamId}`, undefined, PROTOCOL_ERROR);
    if (streamId <= this.#lastPeerId) return;
    this.#lastPeerId = streamId;
    if (this.#closing) {
      this.#write(frame(Frame.RST_STREAM, 0, streamId, u32(REFUSED_STREAM)));
      return;
    }
    const stream = new H2Stream(streamId, this, this.#peerInitialWindow);
    this.#streams.set(streamId, stream);
    stream.onHeaders(headers, false);
    this.emit('stream', stream, headers);
    if (endStream) stream.onRemoteEnd();
  }
}
