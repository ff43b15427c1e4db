/**
 * The client side of our gRPC, on our own HTTP/2 (h2.ts): what ctrctl uses.
 *
 * A CLI makes a call or two and exits, so what it pays before its first byte
 * is on the wire is most of its cost: loading @grpc/grpc-js took some 40 ms of
 * ctrctl's start here, and its channel (resolver, load balancer, subchannel,
 * connectivity states) 20 ms more on a first call, and node:http2 itself
 * (with the node:tls it loads) 30 ms more. This client speaks the gRPC wire
 * protocol (HTTP/2, length-prefixed messages, status in trailers) to a unix
 * socket directly and gives the same clients as `dial` in grpc.ts:
 * promises for unary calls (deadline, UNAVAILABLE retried for `retryMs`),
 * object-mode Node streams with `cancel()` for streaming ones, and errors
 * shaped as grpc-js's (code, details, metadata), which `fromGrpcError` maps.
 * Daemons keep grpc-js, whose server side this does not replace.
 *
 * Left out as ctrctl needs none of it: compression (never asked for, so
 * never sent), TLS and name resolution (unix sockets only), and client
 * metadata beyond the deadline.
 */
import { connect as netConnect } from 'node:net';
import { Duplex } from 'node:stream';
import type { ClientDuplexStream, ClientReadableStream, ClientWritableStream, Metadata } from '@grpc/grpc-js';
import { fromGrpcError, GrpcCode, isUnavailable } from './errors.js';
import { H2_CANCEL, type H2Headers, H2Session, type H2Stream } from './h2.js';

// biome-ignore lint/suspicious/noExplicitAny: generated definitions are checked through ReqOf/ResOf
export interface MethodDef<Req = any, Res = any> {
  path: string;
  requestStream: boolean;
  responseStream: boolean;
  requestSerialize(value: Req): Buffer;
  requestDeserialize(bytes: Buffer): Req;
  responseSerialize(value: Res): Buffer;
  responseDeserialize(bytes: Buffer): Res;
}
export type ServiceDef = Record<string, MethodDef>;

export type ReqOf<M> = M extends MethodDef<infer Req, unknown> ? Req : never;
export type ResOf<M> = M extends { responseDeserialize(bytes: Buffer): infer Res } ? Res : never;
export type Unary = { requestStream: false; responseStream: false };
export type ServerStreaming = { requestStream: false; responseStream: true };
export type ClientStreaming = { requestStream: true; responseStream: false };

export interface CallOptions {
  /** Deadline of the call in ms (unary default 60 s; streams have none unless given). */
  timeoutMs?: number;
  /** Keep retrying UNAVAILABLE for up to this long (a daemon restarting). Default 0. */
  retryMs?: number;
  /** Request metadata (grpc-js's dial only). */
  metadata?: Metadata;
}

export type ApiClient<D extends ServiceDef> = {
  [K in keyof D]: D[K] extends Unary
    ? (request: ReqOf<D[K]>, opts?: CallOptions) => Promise<ResOf<D[K]>>
    : D[K] extends ServerStreaming
      ? (request: ReqOf<D[K]>, opts?: CallOptions) => ClientReadableStream<ResOf<D[K]>>
      : D[K] extends ClientStreaming
        ? (opts?: CallOptions) => { stream: ClientWritableStream<ReqOf<D[K]>>; response: Promise<ResOf<D[K]>> }
        : (opts?: CallOptions) => ClientDuplexStream<ReqOf<D[K]>, ResOf<D[K]>>;
} & { close(): void };

export const DEFAULT_UNARY_TIMEOUT_MS = 60_000;

export const socketAddress = (socketPath: string) => `unix:${socketPath}`;

/** Trailer that marks a status as a daemon's answer, so a client tells it from a channel that failed. */
export const ORIGIN_KEY = 'ctr-origin';

/** Whether an error was a daemon's answer (UNAVAILABLE from a registry it could not reach), not a failed channel. */
export function answeredByDaemon(err: unknown): boolean {
  const metadata = (err as { cause?: { metadata?: { get?(key: string): unknown[] } } } | undefined)?.cause?.metadata;
  return typeof metadata?.get === 'function' && metadata.get(ORIGIN_KEY).length > 0;
}

/** Reads a server stream to the end, mapping its error to a CtrError. */
export async function* readStream<T>(stream: ClientReadableStream<T>): AsyncGenerator<T> {
  try {
    for await (const item of stream) yield item as T;
  } catch (err) {
    throw fromGrpcError(err);
  } finally {
    stream.cancel();
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A unary call, made again while it fails UNAVAILABLE (a daemon restarting)
 * for up to `retryMs`, backing off from 50 ms to 500 ms. Both clients' unary calls.
 */
export async function retryUnavailable<T>(attempt: () => Promise<T>, retryMs = 0): Promise<T> {
  const retryUntil = Date.now() + retryMs;
  let backoff = 50;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (!isUnavailable(err) || Date.now() + backoff > retryUntil) throw err;
      await sleep(backoff);
      backoff = Math.min(backoff * 2, 500);
    }
  }
}

const MAX_MESSAGE = 16 * 1024 * 1024;
const MAX_TIMER_MS = 2 ** 31 - 1;

/** The metadata of a status (response headers and trailers), read as grpc-js's Metadata is. */
class StatusMetadata {
  readonly #map = new Map<string, string[]>();
  add(headers: H2Headers) {
    for (const [k, v] of Object.entries(headers)) {
      if (k.startsWith(':') || v === undefined) continue;
      this.#map.set(k, [...(this.#map.get(k) ?? []), ...(Array.isArray(v) ? v : [v])]);
    }
  }
  get(key: string): string[] {
    return this.#map.get(key.toLowerCase()) ?? [];
  }
}

/** A call's end that is not OK, shaped as grpc-js's ServiceError. */
export class StatusError extends Error {
  constructor(
    readonly code: number,
    readonly details: string,
    readonly metadata: StatusMetadata = new StatusMetadata(),
  ) {
    super(
      `${code} ${Object.keys(GrpcCode).find((k) => GrpcCode[k as keyof typeof GrpcCode] === code) ?? 'UNKNOWN'}: ${details}`,
    );
  }
}

/** docker-style deadlines as grpc-timeout: at most 8 digits and a unit. */
function grpcTimeout(ms: number): string {
  if (ms < 1e8) return `${Math.max(1, Math.ceil(ms))}m`;
  if (ms < 1e11) return `${Math.ceil(ms / 1000)}S`;
  return `${Math.min(99_999_999, Math.ceil(ms / 3_600_000))}H`;
}

/** One length-prefixed message (uncompressed). */
export function frame(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

/** Cuts length-prefixed messages out of DATA frames, however they were split. */
export class MessageReader {
  #chunks: Buffer[] = [];
  #have = 0;

  /** The whole messages the chunk completes; throws a StatusError on a bad prefix. */
  push(chunk: Buffer): Buffer[] {
    this.#chunks.push(chunk);
    this.#have += chunk.length;
    const out: Buffer[] = [];
    for (;;) {
      if (this.#have < 5) return out;
      const head = this.#peek(5);
      if (head[0] !== 0)
        throw new StatusError(GrpcCode.INTERNAL, 'a compressed message was received, none was asked for');
      const size = head.readUInt32BE(1);
      if (size > MAX_MESSAGE)
        throw new StatusError(
          GrpcCode.RESOURCE_EXHAUSTED,
          `Received message larger than max (${size} vs ${MAX_MESSAGE})`,
        );
      if (this.#have < 5 + size) return out;
      out.push(this.#take(5 + size).subarray(5));
    }
  }

  get pending(): number {
    return this.#have;
  }

  #peek(n: number): Buffer {
    if (this.#chunks[0].length < n) this.#chunks = [Buffer.concat(this.#chunks)];
    return this.#chunks[0].subarray(0, n);
  }

  #take(n: number): Buffer {
    const all = this.#chunks.length === 1 ? this.#chunks[0] : Buffer.concat(this.#chunks);
    this.#chunks = all.length > n ? [all.subarray(n)] : [];
    this.#have -= n;
    return all.subarray(0, n);
  }
}

/** One HTTP/2 connection per socket, shared by the clients of this process that dial it. */
class Connection {
  #session?: H2Session;
  users = 0;

  constructor(readonly socketPath: string) {}

  /** The live session, made anew after one failed or went away (a daemon restarted). */
  session(): H2Session {
    const s = this.#session;
    if (s && !s.closed && !s.destroyed) return s;
    const session = new H2Session(netConnect(this.socketPath));
    const forget = () => {
      if (this.#session === session) this.#session = undefined;
    };
    // A failed connect also fails its streams, which report it; the session only needs forgetting.
    session.on('error', forget);
    session.on('close', forget);
    session.on('goaway', forget);
    this.#session = session;
    return session;
  }

  close() {
    this.#session?.close();
    this.#session = undefined;
  }
}

const connections = new Map<string, Connection>();

/**
 * A call in flight: an object-mode Duplex (requests in, responses out) over
 * one HTTP/2 stream. It ends when the status is OK and fails with a
 * StatusError otherwise; cancel() fails it with CANCELLED, as grpc-js does.
 */
class Call extends Duplex {
  readonly #req: H2Stream;
  readonly #method: MethodDef;
  readonly #reader = new MessageReader();
  readonly #metadata = new StatusMetadata();
  #status?: { code: number; details: string };
  #done = false;
  #timer?: NodeJS.Timeout;

  constructor(conn: Connection, method: MethodDef, timeoutMs: number | undefined) {
    super({ objectMode: true });
    this.#method = method;
    const headers: Record<string, string> = {
      ':method': 'POST',
      ':path': method.path,
      'content-type': 'application/grpc',
      te: 'trailers',
    };
    if (timeoutMs) headers['grpc-timeout'] = grpcTimeout(timeoutMs);
    const req = conn.session().request(headers);
    this.#req = req;
    // A deadline past what a timer holds (some 24 days: "a year" is how callers say none) is the server's alone.
    if (timeoutMs && timeoutMs <= MAX_TIMER_MS)
      this.#timer = setTimeout(() => this.#finish(GrpcCode.DEADLINE_EXCEEDED, 'Deadline exceeded'), timeoutMs);
    req.on('response', (h) => this.#onHeaders(h));
    req.on('trailers', (h) => this.#onHeaders(h));
    req.on('data', (chunk: Buffer) => this.#onData(chunk));
    req.on('end', () => this.#onEnd());
    req.on('error', (err: Error & { code?: string }) => {
      // The connection (or the stream) failed before a status came: the daemon is not there or went away.
      this.#finish(
        GrpcCode.UNAVAILABLE,
        `${err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? 'No connection established' : 'Connection dropped'}: ${err.message}`,
      );
    });
    req.on('close', () => {
      if (!this.#done) this.#onEnd();
    });
  }

  #onHeaders(h: H2Headers) {
    this.#metadata.add(h);
    const httpStatus = h[':status'];
    if (httpStatus !== undefined && Number(httpStatus) !== 200 && h['grpc-status'] === undefined) {
      this.#finish(GrpcCode.UNKNOWN, `the server answered HTTP ${httpStatus}`);
      return;
    }
    const code = h['grpc-status'];
    if (code !== undefined) {
      let details = String(h['grpc-message'] ?? '');
      try {
        details = decodeURIComponent(details);
      } catch {
        // Not percent-encoded after all: as sent.
      }
      this.#status = { code: Number(code), details };
    }
  }

  #onData(chunk: Buffer) {
    let messages: Buffer[];
    try {
      messages = this.#reader.push(chunk);
    } catch (err) {
      const e = err as StatusError;
      this.#finish(e.code, e.details);
      return;
    }
    for (const m of messages) {
      let value: unknown;
      try {
        value = this.#method.responseDeserialize(m);
      } catch (err) {
        this.#finish(GrpcCode.INTERNAL, `Response message parsing error: ${(err as Error).message}`);
        return;
      }
      if (!this.push(value)) this.#req.pause();
    }
  }

  #onEnd() {
    if (this.#reader.pending) this.#finish(GrpcCode.INTERNAL, 'the stream ended inside a message');
    else if (this.#status) this.#finish(this.#status.code, this.#status.details);
    else this.#finish(GrpcCode.UNAVAILABLE, 'Connection dropped: the stream ended without a status');
  }

  /** The call's one end: OK ends the readable side, anything else fails the whole call. */
  #finish(code: number, details: string) {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#timer);
    if (!this.#req.closed) this.#req.close(H2_CANCEL);
    if (code === GrpcCode.OK) {
      this.push(null);
      return;
    }
    this.destroy(new StatusError(code, details, this.#metadata));
  }

  cancel() {
    this.#finish(GrpcCode.CANCELLED, 'Cancelled on client');
  }

  override _read() {
    if (!this.#done) this.#req.resume();
  }

  override _write(message: unknown, _enc: BufferEncoding, cb: (err?: Error | null) => void) {
    if (this.#done) return cb();
    let bytes: Buffer;
    try {
      bytes = this.#method.requestSerialize(message);
    } catch (err) {
      return cb(err as Error);
    }
    this.#req.write(frame(bytes), () => cb());
  }

  override _final(cb: (err?: Error | null) => void) {
    if (!this.#done) this.#req.end();
    cb();
  }
}

/** The single response of a unary or client-streaming call. */
function single(call: Call): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let response: unknown;
    let got = false;
    call.on('data', (m) => {
      response = m;
      got = true;
    });
    call.on('end', () =>
      got ? resolve(response) : reject(fromGrpcError(new StatusError(GrpcCode.UNIMPLEMENTED, 'No message received'))),
    );
    call.on('error', (err) => reject(fromGrpcError(err)));
  });
}

/**
 * The shared connection to `socketPath`, with one more user; the release
 * (once per acquire) closes it when its last user is gone.
 */
function acquire(socketPath: string): { conn: Connection; release: () => void } {
  let conn = connections.get(socketPath);
  if (!conn) {
    conn = new Connection(socketPath);
    connections.set(socketPath, conn);
  }
  const c = conn;
  c.users++;
  let released = false;
  return {
    conn: c,
    release() {
      if (released) return;
      released = true;
      if (--c.users === 0) {
        c.close();
        connections.delete(socketPath);
      }
    },
  };
}

/**
 * The connection to the daemon at `socketPath`, begun before any call: its
 * set-up (the connect, and both sides' preface and settings) then overlaps
 * whatever the caller does before its first call, and the next dialH2 of the
 * socket takes it. A daemon that is not there fails nothing here: the first
 * call tries again and reports it. Returns a release, which closes the
 * connection once no client of it is left.
 */
export function preconnect(socketPath: string): () => void {
  const { conn, release } = acquire(socketPath);
  conn.session();
  return release;
}

/** Connects to a service on a unix socket; the connection is made on the first call and shared. */
export function dialH2<D extends ServiceDef>(definition: D, socketPath: string): ApiClient<D> {
  const { conn: c, release } = acquire(socketPath);
  // biome-ignore lint/suspicious/noExplicitAny: the mapped type ApiClient<D> gives callers their types
  const api: any = { close: release };
  for (const [name, method] of Object.entries(definition)) {
    if (!method.requestStream && !method.responseStream) {
      api[name] = (request: unknown, opts: CallOptions = {}) =>
        retryUnavailable(() => {
          const call = new Call(c, method, opts.timeoutMs ?? DEFAULT_UNARY_TIMEOUT_MS);
          const response = single(call);
          call.end(request);
          return response;
        }, opts.retryMs);
    } else if (!method.requestStream) {
      api[name] = (request: unknown, opts: CallOptions = {}) => {
        const call = new Call(c, method, opts.timeoutMs);
        call.end(request);
        return call;
      };
    } else if (!method.responseStream) {
      api[name] = (opts: CallOptions = {}) => {
        const call = new Call(c, method, opts.timeoutMs);
        const response = single(call);
        response.catch(() => undefined);
        return { stream: call, response };
      };
    } else {
      api[name] = (opts: CallOptions = {}) => new Call(c, method, opts.timeoutMs);
    }
  }
  return api as ApiClient<D>;
}
