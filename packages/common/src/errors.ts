/**
 * One error vocabulary for every ctr process (containerd's errdefs). Code
 * throws these; the gRPC edge maps them to status codes once, and clients map
 * status codes back, so nobody matches on message strings.
 */

export type ErrorKind =
  | 'InvalidArgument'
  | 'NotFound'
  | 'AlreadyExists'
  | 'FailedPrecondition'
  | 'PermissionDenied'
  | 'Unauthenticated'
  | 'ResourceExhausted'
  | 'Aborted'
  | 'Unavailable'
  | 'DeadlineExceeded'
  | 'Canceled'
  | 'Unimplemented'
  | 'Internal';

/** gRPC status codes (grpc/doc/statuscodes.md), kept here so callers need not load grpc-js. */
export const GrpcCode = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;

const codeOfKind: Record<ErrorKind, number> = {
  InvalidArgument: GrpcCode.INVALID_ARGUMENT,
  NotFound: GrpcCode.NOT_FOUND,
  AlreadyExists: GrpcCode.ALREADY_EXISTS,
  FailedPrecondition: GrpcCode.FAILED_PRECONDITION,
  PermissionDenied: GrpcCode.PERMISSION_DENIED,
  Unauthenticated: GrpcCode.UNAUTHENTICATED,
  ResourceExhausted: GrpcCode.RESOURCE_EXHAUSTED,
  Aborted: GrpcCode.ABORTED,
  Unavailable: GrpcCode.UNAVAILABLE,
  DeadlineExceeded: GrpcCode.DEADLINE_EXCEEDED,
  Canceled: GrpcCode.CANCELLED,
  Unimplemented: GrpcCode.UNIMPLEMENTED,
  Internal: GrpcCode.INTERNAL,
};

const kindOfCode = new Map<number, ErrorKind>(
  Object.entries(codeOfKind).map(([kind, code]) => [code, kind as ErrorKind]),
);
kindOfCode.set(GrpcCode.OUT_OF_RANGE, 'InvalidArgument');
kindOfCode.set(GrpcCode.DATA_LOSS, 'Internal');
kindOfCode.set(GrpcCode.UNKNOWN, 'Internal');

export class CtrError extends Error {
  constructor(
    readonly kind: ErrorKind,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = `${kind}Error`;
  }

  get grpcCode(): number {
    return codeOfKind[this.kind];
  }
}

const make = (kind: ErrorKind) => (message: string, options?: { cause?: unknown }) =>
  new CtrError(kind, message, options);

export const invalidArgument = make('InvalidArgument');
export const notFound = make('NotFound');
export const alreadyExists = make('AlreadyExists');
export const failedPrecondition = make('FailedPrecondition');
export const permissionDenied = make('PermissionDenied');
export const unauthenticated = make('Unauthenticated');
export const resourceExhausted = make('ResourceExhausted');
export const unavailable = make('Unavailable');
export const deadlineExceeded = make('DeadlineExceeded');
export const canceled = make('Canceled');
export const unimplemented = make('Unimplemented');
export const internal = make('Internal');

export function isKind(err: unknown, kind: ErrorKind): boolean {
  return err instanceof CtrError && err.kind === kind;
}

export const isNotFound = (err: unknown) => isKind(err, 'NotFound');
export const isAlreadyExists = (err: unknown) => isKind(err, 'AlreadyExists');
export const isUnavailable = (err: unknown) => isKind(err, 'Unavailable');

/** The gRPC status code an error crosses the wire with; unknown errors are INTERNAL. */
export function grpcCodeOf(err: unknown): number {
  return err instanceof CtrError ? err.grpcCode : GrpcCode.INTERNAL;
}

export function kindOfGrpcCode(code: number): ErrorKind {
  return kindOfCode.get(code) ?? 'Internal';
}

/** Turns a gRPC client error (code + details) back into a typed CtrError. */
export function fromGrpcError(err: unknown): CtrError {
  if (err instanceof CtrError) return err;
  const e = err as { code?: unknown; details?: unknown; message?: unknown };
  if (typeof e?.code === 'number') {
    const details = typeof e.details === 'string' && e.details ? e.details : String(e.message ?? 'error');
    return new CtrError(kindOfGrpcCode(e.code), details, { cause: err });
  }
  return new CtrError('Internal', err instanceof Error ? err.message : String(err), { cause: err });
}

/** Node system errors (ENOENT...) mapped to the vocabulary, for fs work at service edges. */
export function fromSystemError(err: unknown, what: string): CtrError {
  const code = (err as NodeJS.ErrnoException)?.code;
  const msg = `${what}: ${(err as Error)?.message ?? String(err)}`;
  switch (code) {
    case 'ENOENT':
      return notFound(msg, { cause: err });
    case 'EEXIST':
      return alreadyExists(msg, { cause: err });
    case 'EACCES':
    case 'EPERM':
      return permissionDenied(msg, { cause: err });
    case 'ENOSPC':
      return resourceExhausted(msg, { cause: err });
    case 'EINVAL':
      return invalidArgument(msg, { cause: err });
    default:
      return internal(msg, { cause: err });
  }
}
