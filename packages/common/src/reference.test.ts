import { describe, expect, it } from 'vitest';
import { familiarName, normalizeReference, parseReference } from './reference.js';

describe('references, normalised as docker does', () => {
  it.each([
    ['busybox', 'docker.io/library/busybox:latest'],
    ['busybox:1.36', 'docker.io/library/busybox:1.36'],
    ['library/busybox', 'docker.io/library/busybox:latest'],
    ['index.docker.io/library/busybox', 'docker.io/library/busybox:latest'],
    ['user/app', 'docker.io/user/app:latest'],
    ['localhost/app', 'localhost/app:latest'],
    ['localhost:5000/a/b/c:v1', 'localhost:5000/a/b/c:v1'],
    ['127.0.0.1:5000/app', '127.0.0.1:5000/app:latest'],
    ['[::1]:5000/app:t', '[::1]:5000/app:t'],
    ['ghcr.io/o/app@sha256:' + 'a'.repeat(64), `ghcr.io/o/app@sha256:${'a'.repeat(64)}`],
    ['app:v2@sha256:' + 'b'.repeat(64), `docker.io/library/app:v2@sha256:${'b'.repeat(64)}`],
    ['my-reg.example.com/x__y/z.z-w', 'my-reg.example.com/x__y/z.z-w:latest'],
  ])('%s → %s', (input, want) => {
    expect(normalizeReference(input)).toBe(want);
  });

  it.each([
    ['', /invalid reference format/],
    ['Busybox', /repository name \(library\/Busybox\) must be lowercase/],
    ['busybox:', /invalid reference format/],
    ['busybox:bad tag', /invalid reference format/],
    ['busybox@sha256:abc', /invalid reference format/],
    ['a//b', /invalid reference format/],
    ['-app', /invalid reference format/],
    ['host:port/app', /invalid reference format/],
    ['a'.repeat(64).replace(/a/g, 'f'), /cannot specify 64-byte hexadecimal strings/],
    [`x/${'a'.repeat(260)}`, /not be more than 255 characters/],
  ])('refuses %j', (input, why) => {
    expect(() => parseReference(input)).toThrow(why);
  });

  it('shows names the familiar way', () => {
    expect(familiarName(parseReference('busybox'))).toBe('busybox');
    expect(familiarName(parseReference('user/app'))).toBe('user/app');
    expect(familiarName(parseReference('localhost:5000/app'))).toBe('localhost:5000/app');
  });
});
