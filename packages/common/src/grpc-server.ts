/**
 * A gRPC server of our own, on h2.ts: what the shim serves with.
 *
 * Every container has a shim, and every start boots one (the warm spare that
 * replaces the one it took), so what a shim loads is paid on every start and
 * kept in memory as long as its container runs. grpc-js's server, with
 * node:http2 and the node:tls it loads, was some 80 ms of CPU of a shim's
 * boot here. This server takes the same services (`implement`'s, in
 * grpc-impl.ts) and gives their handlers calls shaped as grpc-js's: a unary
 * or server-streaming call's `request`, object-mode streams for the rest,
 * `write()` with back-pressure, 'cancelled' when the client goes away. A
 * failed handler's status goes in the trailers (trailers-only when nothing
 * was sent), with the `ctr-origin` mark its clients read.
 *
 * Left out as no client of ours uses it: compression, request metadata
 * beyond what HTTP/2 carries, and deadlines (a client that gives up resets
 * its stream, which the handler sees as 'cancelled').
 */
import { chmodSync, existsSync, lstatSync, mkdirSync, type Stats, unlinkSync } from 'node:fs';
import { createServer, connect as netConnect } from 'node:net';
import { dirname } from 'node:path';
import { Duplex } from 'node:stream';
import { alreadyExists, failedPrecondition, GrpcCode } from './errors.js';
import { frame, MessageReader, type MethodDef, type StatusError } from './grpc-client.js';
import type { ServiceBinding, StatusTrailers } from './grpc-impl.js';
import { H2Session, type H2Stream } from './h2.js';

/** True when something accepts connections on the socket. */
export function socketAlive(socketPath: string): Promise<boolean> {
  // No socket file, nobody there: said without a connect's error (a new container's shim is the common case).
  if (!existsSync(socketPath)) return Promise.resolve(false);
  return new Promise((resolve) => {
    const sock = netConnect(socketPath);
    sock.once('connect', () => {
      sock.destroy();
      resolve(true);
    });
    sock.once('error', () => resolve(false));
  });
}

/** Makes the socket path ours: a stale socket is removed, a live one refused. */
export async function claimSocket(socketPath: string): Promise<void> {
  // In this thread, not libuv's pool: a shim zygote rehearses serving, and starts no pool (apps/shim/src/zygote.ts).
  mkdirSync(dirname(socketPath), { recursive: true, mode: 0o711 });
  let st: Stats;
  try {
    st = lstatSync(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw failedPrecondition(`${socketPath} exists and is not a socket`);
  if (await socketAlive(socketPath)) throw alreadyExists(`another process is serving ${socketPath}`);
  try {
    unlinkSync(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

interface StatusLike {
  code: number;
  details: string;
  metadata?: Pick<StatusTrailers, 'toHttp2Headers'> | null;
}

const isStatus = (v: unknown): v is StatusLike =>
  typeof v === 'object' && v !== null && typeof (v as StatusLike).code === 'number' && !(v instanceof Error);

/**
 * One call: an object-mode Duplex of the client's messages in and ours out.
 * end() sends status OK; emit('error', status) sends that status, as
 * grpc-js's calls do.
 */
class ServerCall extends Duplex {
  request: unknown;
  cancelled = false;
  #headersSent = false;
  #done = false;

  constructor(
    private readonly stream: H2Stream,
    private readonly method: MethodDef | undefined,
  ) {
    super({ objectMode: true });
    const reader = new MessageReader();
    stream.on('data', (chunk: Buffer) => {
      if (this.#done || !method) return;
      let messages: Buffer[];
      try {
        messages = reader.push(chunk);
      } catch (err) {
        const e = err as StatusError;
        this.sendStatus({ code: e.code, details: e.details });
        return;
      }
      for (const m of messages) {
        let value: unknown;
        try {
          value = method.requestDeserialize(m);
        } catch (err) {
          this.sendStatus({
            code: GrpcCode.INTERNAL,
            details: `Request message parsing error: ${(err as Error).message}`,
          });
          return;
        }
        if (!this.push(value)) stream.pause();
      }
    });
    stream.on('end', () => this.push(null));
    stream.on('close', () => {
      if (this.#done) return;
      // The client went away (or reset the stream) before its status.
      this.#done = true;
      this.cancelled = true;
      this.emit('cancelled');
      this.destroy();
    });
  }

  override _read() {
    this.stream.resume();
  }

  override _write(message: unknown, _enc: BufferEncoding, cb: (err?: Error | null) => void) {
    if (this.#done || !this.method) return cb();
    let bytes: Buffer;
    try {
      bytes = this.method.responseSerialize(message);
    } catch (err) {
      return cb(err as Error);
    }
    this.#sendHeaders();
    this.stream.write(frame(bytes), () => cb());
  }

  override _final(cb: (err?: Error | null) => void) {
    this.sendStatus({ code: GrpcCode.OK, details: '' });
    cb();
  }

  // biome-ignore lint/suspicious/noExplicitAny: EventEmitter's signature
  override emit(event: string | symbol, ...args: any[]): boolean {
    // A handler's failure, as grpc-js takes it: the status goes to the client, not up as a stream error.
    if (event === 'error' && isStatus(args[0])) {
      this.sendStatus(args[0]);
      return true;
    }
    return super.emit(event, ...args);
  }

  #sendHeaders() {
    if (this.#headersSent) return;
    this.#headersSent = true;
    this.stream.respond({ ':status': '200', 'content-type': 'application/grpc' });
  }

  /** The call's one end; a status after the first is dropped. */
  sendStatus(status: StatusLike) {
    if (this.#done) return;
    this.#done = true;
    const trailers: Record<string, string> = {
      'grpc-status': String(status.code),
      'grpc-message': encodeURI(status.details),
    };
    for (const [k, v] of Object.entries(status.metadata?.toHttp2Headers() ?? {})) {
      trailers[k] = Array.isArray(v) ? v.join(', ') : String(v);
    }
    if (this.#headersSent) this.stream.sendTrailers(trailers);
    else {
      this.#headersSent = true;
      this.stream.respond({ ':status': '200', 'content-type': 'application/grpc', ...trailers }, true);
    }
    // Whatever the client still sends is not read.
    this.push(null);
  }
}

export interface LeanServer {
  readonly socketPath: string;
  /**
   * Stops taking calls; those in flight get `graceMs` to end, then their
   * connections are cut. The socket is gone when this returns (libuv unlinks
   * it as the server stops listening), not when the promise settles: a new
   * server may be on that path by then.
   */
  close(graceMs?: number): Promise<void>;
}

// biome-ignore lint/suspicious/noExplicitAny: grpc-js's handler shapes, dispatched on the method's kind
type AnyHandler = (...args: any[]) => void;

/** Serves `services` on a unix socket (mode 0660), as `serve` in grpc.ts does with grpc-js. */
export async function serveH2(socketPath: string, services: ServiceBinding[]): Promise<LeanServer> {
  await claimSocket(socketPath);
  const methods = new Map<string, { def: MethodDef; handler: AnyHandler }>();
  for (const s of services) {
    for (const [name, def] of Object.entries(s.definition)) {
      const handler = s.implementation[name] as AnyHandler | undefined;
      if (handler) methods.set(def.path, { def, handler });
    }
  }

  const dispatch = (stream: H2Stream, path: string) => {
    const m = methods.get(path);
    const call = new ServerCall(stream, m?.def);
    call.on('error', () => undefined); // a write after the client went away
    if (!m) {
      call.sendStatus({ code: GrpcCode.UNIMPLEMENTED, details: `The server does not implement the method ${path}` });
      return;
    }
    const { def, handler } = m;
    const answer = (err: StatusLike | null, res?: unknown) => {
      if (err) call.sendStatus(err);
      else call.end(res);
    };
    if (def.requestStream) {
      if (def.responseStream) handler(call);
      else handler(call, answer);
      return;
    }
    // Unary and server-streaming calls take their one request first.
    let got = false;
    call.on('data', (req) => {
      if (got) return;
      got = true;
      call.request = req;
    });
    call.once('end', () => {
      if (call.cancelled) return;
      if (!got) {
        call.sendStatus({ code: GrpcCode.INTERNAL, details: 'the request carried no message' });
        return;
      }
      if (def.responseStream) handler(call);
      else handler(call, answer);
    });
  };

  const sessions = new Set<H2Session>();
  const server = createServer((socket) => {
    const session = new H2Session(socket, 'server');
    sessions.add(session);
    session.on('error', () => undefined);
    session.on('close', () => sessions.delete(session));
    session.on('stream', (stream: H2Stream, headers: Record<string, unknown>) =>
      dispatch(stream, String(headers[':path'] ?? '')),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });
  chmodSync(socketPath, 0o660);

  let closed: Promise<void> | undefined;
  return {
    socketPath,
    close(graceMs = 2000) {
      closed ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sessions) s.close();
        setTimeout(() => {
          for (const s of sessions) s.destroy();
        }, graceMs).unref();
      });
      return closed;
    },
  };
}
