import { describe, expect, it } from 'vitest';
import {
  CtrError,
  fromGrpcError,
  fromSystemError,
  GrpcCode,
  grpcCodeOf,
  isNotFound,
  kindOfGrpcCode,
  notFound,
  type ErrorKind,
} from './errors.js';

describe('error vocabulary', () => {
  const kinds: ErrorKind[] = [
    'InvalidArgument',
    'NotFound',
    'AlreadyExists',
    'FailedPrecondition',
    'PermissionDenied',
    'Unauthenticated',
    'ResourceExhausted',
    'Aborted',
    'Unavailable',
    'DeadlineExceeded',
    'Canceled',
    'Unimplemented',
    'Internal',
  ];

  it('maps every kind to a gRPC code and back', () => {
    for (const kind of kinds) {
      const err = new CtrError(kind, 'x');
      expect(kindOfGrpcCode(err.grpcCode)).toBe(kind);
    }
    expect(new Set(kinds.map((k) => new CtrError(k, '').grpcCode)).size).toBe(kinds.length);
  });

  it('turns a grpc-js error into a typed error with its details', () => {
    const err = fromGrpcError({
      code: GrpcCode.NOT_FOUND,
      details: 'no such container: web',
      message: '5 NOT_FOUND: ...',
    });
    expect(isNotFound(err)).toBe(true);
    expect(err.message).toBe('no such container: web');
  });

  it('treats unknown errors as internal', () => {
    expect(grpcCodeOf(new Error('boom'))).toBe(GrpcCode.INTERNAL);
    expect(fromGrpcError(new Error('boom')).kind).toBe('Internal');
    expect(kindOfGrpcCode(GrpcCode.UNKNOWN)).toBe('Internal');
  });

  it('maps system errors by errno name', () => {
    const enoent = Object.assign(new Error('open /x'), { code: 'ENOENT' });
    expect(fromSystemError(enoent, 'reading config').kind).toBe('NotFound');
    const eexist = Object.assign(new Error('mkdir'), { code: 'EEXIST' });
    expect(fromSystemError(eexist, 'mkdir').kind).toBe('AlreadyExists');
    expect(notFound('a') instanceof Error).toBe(true);
  });
});
