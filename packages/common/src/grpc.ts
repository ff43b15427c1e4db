/**
 * gRPC on unix sockets, shared by every daemon and client.
 *
 * Servers: `serve` claims a socket (removing a stale one, refusing one that is
 * alive), binds it mode 0660 and registers services built with `implement`
 * (grpc-impl.ts), whose async handlers throw CtrErrors that become status
 * codes there, once. Clients: `dial` returns a promise-based client typed from
 * the generated service definition; unary calls carry a deadline and retry
 * UNAVAILABLE (a daemon restarting) for as long as the caller allows.
 * Without grpc-js, for the processes whose start is paid again and again:
 * grpc-client.ts has the same clients (`dialH2`, ctrctl's) and grpc-server.ts
 * the same server (`serveH2`, the shim's).
 */
import { chmod, unlink } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import {
  type ApiClient,
  type CallOptions,
  DEFAULT_UNARY_TIMEOUT_MS,
  type ServiceDef,
  retryUnavailable,
  socketAddress,
} from './grpc-client.js';
import { type CtrError, fromGrpcError, GrpcCode, unavailable } from './errors.js';
import type { ServiceBinding } from './grpc-impl.js';
import { claimSocket } from './grpc-server.js';

export { type Handlers, implement, type ServiceBinding, toStatus } from './grpc-impl.js';
export { claimSocket, socketAlive } from './grpc-server.js';
export {
  type ApiClient,
  answeredByDaemon,
  type CallOptions,
  type MethodDef,
  readStream,
  type ServiceDef,
  socketAddress,
} from './grpc-client.js';

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
