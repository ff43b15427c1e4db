/**
 * Image references, normalised the way docker does (distribution/reference):
 *
 *   busybox                      → docker.io/library/busybox:latest
 *   user/app:1.0                 → docker.io/user/app:1.0
 *   localhost:5000/app           → localhost:5000/app:latest
 *   ghcr.io/o/app@sha256:…       → ghcr.io/o/app@sha256:… (no tag added)
 *
 * and shown back the familiar way (`busybox:latest`, `user/app:1.0`). Errors
 * carry docker's wording.
 */
import { invalidArgument } from './errors.js';

export const DEFAULT_DOMAIN = 'docker.io';
const LEGACY_DOMAIN = 'index.docker.io';
const OFFICIAL_REPO_PREFIX = 'library/';
const NAME_TOTAL_MAX = 255;

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*$/;
const DOMAIN_COMPONENT = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])$/;
const IPV6 = /^\[[a-fA-F0-9:]+\]$/;
const TAG = /^[\w][\w.-]{0,127}$/;
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/;
const HEX64 = /^[a-f0-9]{64}$/;

export interface Reference {
  /** Registry host, with port if any: docker.io, localhost:5000. */
  domain: string;
  /** Repository path within the registry: library/busybox. */
  path: string;
  tag?: string;
  digest?: string;
}

function bad(why = ''): never {
  throw invalidArgument(`invalid reference format${why ? `: ${why}` : ''}`);
}

function validDomain(d: string): boolean {
  const [host, port, ...rest] = d.startsWith('[') ? splitIpv6(d) : d.split(':');
  if (rest.length || (port !== undefined && !/^\d+$/.test(port))) return false;
  if (IPV6.test(host)) return true;
  return host.split('.').every((c) => DOMAIN_COMPONENT.test(c));
}

function splitIpv6(d: string): string[] {
  const end = d.indexOf(']');
  if (end < 0) return [d, 'x'];
  const host = d.slice(0, end + 1);
  const rest = d.slice(end + 1);
  if (!rest) return [host];
  if (!rest.startsWith(':')) return [host, 'x'];
  return [host, rest.slice(1)];
}

/** Parses and normalises a reference; no tag and no digest means `latest`. */
export function parseReference(input: string, { defaultTag = true } = {}): Reference {
  const ref = input.trim();
  if (!ref) bad();
  if (HEX64.test(ref))
    throw invalidArgument(`invalid repository name (${ref}), cannot specify 64-byte hexadecimal strings`);
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!DIGEST.test(digest)) bad();
    if (digest.startsWith('sha256:') && !SHA256_DIGEST.test(digest)) bad();
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf('/');
  const colon = rest.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) bad();
  }
  if (!rest) bad();
  let domain = DEFAULT_DOMAIN;
  let path = rest;
  const slash = rest.indexOf('/');
  if (slash >= 0) {
    const first = rest.slice(0, slash);
    if (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase()) {
      domain = first;
      path = rest.slice(slash + 1);
    }
  }
  if (domain !== DEFAULT_DOMAIN && !validDomain(domain)) bad();
  if (domain === LEGACY_DOMAIN) domain = DEFAULT_DOMAIN;
  if (domain === DEFAULT_DOMAIN && !path.includes('/')) path = OFFICIAL_REPO_PREFIX + path;
  if (path !== path.toLowerCase() && path.split('/').every((c) => COMPONENT.test(c.toLowerCase())))
    bad(`repository name (${path}) must be lowercase`);
  if (!path.split('/').every((c) => COMPONENT.test(c))) bad();
  if (`${domain}/${path}`.length > NAME_TOTAL_MAX)
    bad(`repository name must not be more than ${NAME_TOTAL_MAX} characters`);
  if (!tag && !digest && defaultTag) tag = 'latest';
  return { domain, path, tag, digest };
}

/** domain/path */
export function repositoryOf(r: Reference): string {
  return `${r.domain}/${r.path}`;
}

/** The full normalised string: docker.io/library/busybox:latest, …@sha256:… */
export function formatReference(r: Reference): string {
  return `${repositoryOf(r)}${r.tag ? `:${r.tag}` : ''}${r.digest ? `@${r.digest}` : ''}`;
}

/** The name as docker shows it: docker.io and library/ left out. */
export function familiarName(r: Reference): string {
  if (r.domain !== DEFAULT_DOMAIN) return repositoryOf(r);
  return r.path.startsWith(OFFICIAL_REPO_PREFIX) ? r.path.slice(OFFICIAL_REPO_PREFIX.length) : r.path;
}

const SHA256_DIGEST = /^sha256:[a-f0-9]{64}$/;

/** A sha256 content digest (what ctr stores and checks), or INVALID_ARGUMENT naming `what`. */
/** The whole reference the familiar way: busybox:latest, user/app@sha256:…, 127.0.0.1:5000/app:1. */
export function familiarString(r: Reference): string {
  return `${familiarName(r)}${r.tag ? `:${r.tag}` : ''}${r.digest ? `@${r.digest}` : ''}`;
}

export function checkDigest(digest: string, what = 'digest'): string {
  if (!SHA256_DIGEST.test(digest))
    throw invalidArgument(`invalid ${what} ${JSON.stringify(digest)}: want sha256:<64 hex digits>`);
  return digest;
}

/** Shorthand: the normalised string of a user's reference. */
export function normalizeReference(input: string): string {
  return formatReference(parseReference(input));
}
