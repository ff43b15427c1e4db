/**
 * gRPC on unix sockets, shared by every daemon and client.
 *
 * Servers: `serve` claims a socket (removing a stale one, refusing one that is
 * alive), binds it mode 0660 and registers services built with `implement`,
 * whose async handlers throw CtrErrors that become status codes here, once.
 * Clients: `dial` returns a promise-based client typed from the generated
 * service definition; unary calls carry a deadline and retry UNAVAILABLE
 * (a daemon restarting) for as long as the caller allows. grpc-client.ts has
 * the same clients without grpc-js (`dialH2`), for ctrctl's start-up.
 */
import { existsSync } from 'node:fs';
import { lstat, mkdir, chmod, unlink } from 'node:fs/promises';
import { connect as netConnect } from 'node:net';
import { dirname } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import {
  type ApiClient,
  type CallOptions,
  type ClientStreaming,
  DEFAULT_UNARY_TIMEOUT_MS,
  ORIGIN_KEY,
  type ReqOf,
  type ResOf,
  type ServerStreaming,
  type ServiceDef,
  retryUnavailable,
  socketAddress,
  type Unary,
} from './grpc-client.js';
import {
  alreadyExists,
  CtrError,
  failedPrecondition,
  fromGrpcError,
  GrpcCode,
  grpcCodeOf,
  unavailable,
} from './errors.js';

export {
  type ApiClient,
  answeredByDaemon,
  type CallOptions,
  type MethodDef,
  readStream,
  type ServiceDef,
  socketAddress,
} from './grpc-client.js';

export type Handlers<D extends ServiceDef> = {
  [K in keyof D]?: D[K] extends Unary
    ? (request: ReqOf<D[K]>, call: grpc.ServerUnaryCall<ReqOf<D[K]>, ResOf<D[K]>>) => Promise<ResOf<D[K]>>
    : D[K] extends ServerStreaming
      ? (request: ReqOf<D[K]>, call: grpc.ServerWritableStream<ReqOf<D[K]>, ResOf<D[K]>>) => Promise<void>
      : D[K] extends ClientStreaming
        ? (call: grpc.ServerReadableStream<ReqOf<D[K]>, ResOf<D[K]>>) => Promise<ResOf<D[K]>>
        : (call: grpc.ServerDuplexStream<ReqOf<D[K]>, ResOf<D[K]>>) => Promise<void>;
};

/** Turns any thrown value into what grpc-js sends: a status code and one line of details. */
export function toStatus(err: unknown): Partial<grpc.StatusObject> {
  const message = err instanceof Error ? err.message : String(err);
  // Marks the status as a daemon's answer, so a client tells it from a channel that failed.
  const metadata = new grpc.Metadata();
  metadata.set(ORIGIN_KEY, 'daemon');
  return { code: grpcCodeOf(err) as grpc.status, details: message.split('\n')[0], metadata };
}

type Reporter = (err: unknown, method: string) => void;

/** Adapts async handlers to grpc-js; missing methods answer UNIMPLEMENTED (grpc-js default). */
export function implement<D extends ServiceDef>(
  definition: D,
  handlers: Handlers<D>,
  onInternalError?: Reporter,
): grpc.UntypedServiceImplementation {
  const impl: grpc.UntypedServiceImplementation = {};
  const fail = (method: string, err: unknown) => {
    if (!(err instanceof CtrError) && onInternalError) onInternalError(err, method);
    return toStatus(err);
  };
  for (const [name, def] of Object.entries(definition)) {
    // biome-ignore lint/suspicious/noExplicitAny: dispatch on the method's shape below
    const handler = (handlers as Record<string, any>)[name];
    if (!handler) continue;
    if (!def.requestStream && !def.responseStream) {
      impl[name] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        handler(call.request, call).then(
          (res: unknown) => callback(null, res),
          (err: unknown) => callback(fail(name, err) as grpc.ServiceError, null),
        );
      };
    } else if (!def.requestStream) {
      impl[name] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
        handler(call.request, call).then(
          () => call.end(),
          (err: unknown) => call.emit('error', fail(name, err)),
        );
      };
    } else if (!def.responseStream) {
      impl[name] = (call: grpc.ServerReadableStream<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        handler(call).then(
          (res: unknown) => callback(null, res),
          (err: unknown) => callback(fail(name, err) as grpc.ServiceError, null),
        );
      };
    } else {
      impl[name] = (call: grpc.ServerDuplexStream<unknown, unknown>) => {
        handler(call).then(
          () => call.end(),
          (err: unknown) => call.emit('error', fail(name, err)),
        );
      };
    }
  }
  return impl;
}

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
  await mkdir(dirname(socketPath), { recursive: true, mode: 0o711 });
  let st: Awaited<ReturnType<typeof lstat>>;
  try {
    st = await lstat(socketPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!st.isSocket()) throw failedPrecondition(`${socketPath} exists and is not a socket`);
  if (await socketAlive(socketPath)) throw alreadyExists(`another process is serving ${socketPath}`);
  await unlink(socketPath).catch((err) => {
    if (err.code !== 'ENOENT') throw err;
  });
}

export interface ServiceBinding {
  definition: ServiceDef;
  implementation: grpc.UntypedServiceImplementation;
}

export interface RunningServer {
  readonly socketPath: string;
  readonly server: grpc.Server;
  /** Adds services to the running server (grpc-js looks handlers up per call); replaces a placeholder of `starting`. */
  add(services: ServiceBinding[]): void;
  /**
   * Registers `definitions` with handlers that answer UNAVAILABLE ("NAME is
   * starting"), which clients retry, until add() brings the real ones: a call
   * that arrives while the daemon starts never meets UNIMPLEMENTED.
   */
  starting(name: string, definitions: ServiceDef[]): void;
  /** Graceful shutdown, forced after graceMs; removes the socket. */
  close(graceMs?: number): Promise<void>;
}

export async function serve(socketPath: string, services: ServiceBinding[]): Promise<RunningServer> {
  await claimSocket(socketPath);
  const server = new grpc.Server({ 'grpc.max_receive_message_length': 16 * 1024 * 1024 });
  const placeholders = new Set<unknown>();
  const add = (bindings: ServiceBinding[]) => {
    for (const s of bindings) {
      if (placeholders.delete(s.definition)) server.removeService(s.definition as grpc.ServiceDefinition);
      server.addService(s.definition as grpc.ServiceDefinition, s.implementation);
    }
  };
  const starting = (name: string, definitions: ServiceDef[]) => {
    const status = { code: grpc.status.UNAVAILABLE, details: `${name} is starting` };
    for (const d of definitions) {
      const impl: grpc.UntypedServiceImplementation = {};
      for (const [method, m] of Object.entries(d)) {
        impl[method] = (
          m.requestStream || m.responseStream
            ? (call: grpc.ServerWritableStream<unknown, unknown>) => call.emit('error', status)
            : (_: unknown, cb: grpc.sendUnaryData<unknown>) => cb(status, null)
        ) as grpc.UntypedHandleCall;
      }
      server.addService(d as grpc.ServiceDefinition, impl);
      placeholders.add(d);
    }
  };
  add(services);
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(socketAddress(socketPath), grpc.ServerCredentials.createInsecure(), (err) =>
      err ? reject(err) : resolve(),
    ),
  );
  await chmod(socketPath, 0o660);
  let closed: Promise<void> | undefined;
  return {
    socketPath,
    server,
    add,
    starting,
    close(graceMs = 2000) {
      closed ??= new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.forceShutdown(), graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      }).then(() => unlink(socketPath).catch(() => undefined));
      return closed;
    },
  };
}

function callOptions(timeoutMs: number | undefined): grpc.CallOptions {
  return timeoutMs ? { deadline: Date.now() + timeoutMs } : {};
}

/** Connects to a service on a unix socket; the channel is made lazily on the first call. */
export function dial<D extends ServiceDef>(definition: D, socketPath: string, serviceName = 'ctr'): ApiClient<D> {
  const Ctor = grpc.makeGenericClientConstructor(definition as grpc.ServiceDefinition, serviceName);
  const client = new Ctor(socketAddress(socketPath), grpc.credentials.createInsecure(), {
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    // Reconnect quickly after a daemon restart.
    'grpc.initial_reconnect_backoff_ms': 50,
    'grpc.max_reconnect_backoff_ms': 1000,
  });
  // biome-ignore lint/suspicious/noExplicitAny: methods are installed by makeGenericClientConstructor
  const raw = client as any;
  // biome-ignore lint/suspicious/noExplicitAny: the mapped type ApiClient<D> gives callers their types
  const api: any = { close: () => client.close() };
  for (const [name, def] of Object.entries(definition)) {
    const method = raw[name].bind(client);
    if (!def.requestStream && !def.responseStream) {
      api[name] = (request: unknown, opts: CallOptions = {}) => callUnary(method, request, opts);
    } else if (!def.requestStream) {
      api[name] = (request: unknown, opts: CallOptions = {}) =>
        method(request, opts.metadata ?? new grpc.Metadata(), callOptions(opts.timeoutMs));
    } else if (!def.responseStream) {
      api[name] = (opts: CallOptions = {}) => {
        let stream!: grpc.ClientWritableStream<unknown>;
        const response = new Promise((resolve, reject) => {
          stream = method(
            opts.metadata ?? new grpc.Metadata(),
            callOptions(opts.timeoutMs),
            (err: unknown, res: unknown) => (err ? reject(fromGrpcError(err)) : resolve(res)),
          );
        });
        return { stream, response };
      };
    } else {
      api[name] = (opts: CallOptions = {}) => method(opts.metadata ?? new grpc.Metadata(), callOptions(opts.timeoutMs));
    }
  }
  return api as ApiClient<D>;
}

function callUnary(
  method: (req: unknown, md: grpc.Metadata, o: grpc.CallOptions, cb: (e: unknown, r: unknown) => void) => void,
  request: unknown,
  opts: CallOptions,
): Promise<unknown> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_UNARY_TIMEOUT_MS;
  return retryUnavailable(
    () =>
      new Promise((resolve, reject) =>
        method(request, opts.metadata ?? new grpc.Metadata(), callOptions(timeoutMs), (err, res) =>
          err ? reject(fromGrpcError(err)) : resolve(res),
        ),
      ),
    opts.retryMs,
  );
}

/** An UNAVAILABLE error with a message that names the daemon's socket. */
export function daemonUnreachable(what: string, socketPath: string, cause?: unknown): CtrError {
  return unavailable(`cannot connect to ${what} at ${socketAddress(socketPath)}: is it running?`, { cause });
}

export { GrpcCode };
