/**
 * Services' handlers, shaped for a gRPC server: async functions that throw
 * CtrErrors, adapted once here to the call shapes of grpc-js's server, which
 * our own server (grpc-server.ts) gives too. Nothing here loads grpc-js (its
 * types only), so a process that serves without it (the shim) stays lean.
 */
import type * as grpc from '@grpc/grpc-js';
import { CtrError, grpcCodeOf } from './errors.js';
import {
  type ClientStreaming,
  ORIGIN_KEY,
  type ReqOf,
  type ResOf,
  type ServerStreaming,
  type ServiceDef,
  type Unary,
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

export interface ServiceBinding {
  definition: ServiceDef;
  implementation: grpc.UntypedServiceImplementation;
}

/**
 * A status's trailers, read by both servers as grpc-js reads its Metadata
 * (clone, toHttp2Headers); what a client sees as the status's metadata.
 */
export class StatusTrailers {
  readonly #map = new Map<string, string[]>();

  set(key: string, value: string): void {
    this.#map.set(key.toLowerCase(), [value]);
  }

  get(key: string): string[] {
    return this.#map.get(key.toLowerCase()) ?? [];
  }

  clone(): StatusTrailers {
    const c = new StatusTrailers();
    for (const [k, v] of this.#map) c.#map.set(k, [...v]);
    return c;
  }

  toHttp2Headers(): Record<string, string[]> {
    return Object.fromEntries([...this.#map].map(([k, v]) => [k, [...v]]));
  }
}

/** A call's end that is not OK, as both servers send it. */
export interface Status {
  code: number;
  details: string;
  metadata: StatusTrailers;
}

/** Turns any thrown value into a status: a code and one line of details. */
export function toStatus(err: unknown): Status {
  const message = err instanceof Error ? err.message : String(err);
  // Marks the status as a daemon's answer, so a client tells it from a channel that failed.
  const metadata = new StatusTrailers();
  metadata.set(ORIGIN_KEY, 'daemon');
  return { code: grpcCodeOf(err), details: message.split('\n')[0], metadata };
}

type Reporter = (err: unknown, method: string) => void;

/** Adapts async handlers to the server's calls; missing methods answer UNIMPLEMENTED. */
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
          (err: unknown) => callback(fail(name, err) as unknown as grpc.ServiceError, null),
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
          (err: unknown) => callback(fail(name, err) as unknown as grpc.ServiceError, null),
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
