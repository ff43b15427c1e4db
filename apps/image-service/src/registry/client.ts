/**
 * A client of the OCI distribution spec: manifests and blobs of one
 * repository, from its mirrors first and then its own registry; plain HTTP
 * for loopback and insecure registries; auth from the 401 challenges;
 * retries with backoff on 5xx, 429 and dropped connections; redirects
 * followed (credentials are not sent on to another origin); blob reads from
 * an offset (HTTP Range) so an interrupted download resumes.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import {
  CtrError,
  canceled,
  failedPrecondition,
  internal,
  invalidArgument,
  notFound,
  permissionDenied,
  unauthenticated,
  unavailable,
} from '@ctr/common/errors';
import { formatReference, type Reference } from '@ctr/common/reference';
import { MANIFEST_ACCEPT, MAX_MANIFEST_BYTES, sha256 } from '../oci.js';
import { Authorizer, causeOf } from './auth.js';
import type { Credentials, CredentialStore } from './credentials.js';

export interface RegistryConfig {
  /** Mirrors per registry host: "docker.io": ["http://127.0.0.1:5001"]. */
  mirrors: Record<string, string[]>;
  /** Hosts (host or host:port) spoken to over plain HTTP. */
  insecure: string[];
}

export interface Endpoint {
  /** Where requests go: http://127.0.0.1:5000 */
  origin: string;
  /** host[:port], the key for credentials and challenges. */
  host: string;
  mirror: boolean;
}

const MAX_ATTEMPTS = 5;

/** What fetch takes as a request body. */
export type Body = NonNullable<NonNullable<Parameters<typeof fetch>[1]>['body']>;

function isLoopback(host: string): boolean {
  const name = host.startsWith('[') ? host.slice(1, host.indexOf(']')) : host.split(':')[0];
  return name === 'localhost' || name === '::1' || /^127\.\d+\.\d+\.\d+$/.test(name) || name.endsWith('.localhost');
}

/** Where to fetch a registry's content from, mirrors first; what a push goes to is the last. */
export function endpointsFor(domain: string, config: RegistryConfig): Endpoint[] {
  const out: Endpoint[] = [];
  for (const m of config.mirrors[domain] ?? []) {
    const url = new URL(/^https?:\/\//.test(m) ? m : `${isLoopback(m) ? 'http' : 'https'}://${m}`);
    out.push({ origin: url.origin + url.pathname.replace(/\/+$/, ''), host: url.host, mirror: true });
  }
  const host = domain === 'docker.io' ? 'registry-1.docker.io' : domain;
  const plain = isLoopback(domain) || config.insecure.includes(domain) || config.insecure.includes(host);
  out.push({ origin: `${plain ? 'http' : 'https'}://${host}`, host: domain, mirror: false });
  return out;
}

/** The message a registry put in its error body ({"errors":[{"code","message"}]}), if any. */
async function registryMessage(res: Response): Promise<string> {
  const text = await res.text().catch(() => '');
  try {
    const body = JSON.parse(text) as { errors?: { code?: string; message?: string }[] };
    const e = body.errors?.[0];
    if (e) return [e.code?.toLowerCase().replace(/_/g, ' '), e.message].filter(Boolean).join(': ');
  } catch {}
  return `${res.status} ${res.statusText}`;
}

/** Reads a body, refusing one over `limit` bytes (a manifest's 4 MiB). */
export async function readLimited(res: Response, limit: number, what: string): Promise<Buffer> {
  const declared = Number(res.headers.get('content-length') ?? -1);
  if (declared > limit) {
    await res.body?.cancel();
    throw invalidArgument(`${what} is ${declared} bytes, over the ${limit}-byte limit`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of res.body ?? []) {
    size += c.length;
    if (size > limit) throw invalidArgument(`${what} is over the ${limit}-byte limit`);
    chunks.push(Buffer.from(c));
  }
  return Buffer.concat(chunks);
}

export interface RegistryOptions {
  config: RegistryConfig;
  credentials: CredentialStore;
  /** Credentials given with the request, used before the stored ones. */
  auth?: Credentials;
  fetchFn?: typeof fetch;
  /** Base delay of the retry backoff (tests shorten it). */
  backoffMs?: number;
}

export class Registry {
  readonly authorizer: Authorizer;
  readonly fetchFn: typeof fetch;

  constructor(readonly opts: RegistryOptions) {
    this.fetchFn = opts.fetchFn ?? fetch;
    this.authorizer = new Authorizer(async (host) => opts.auth ?? (await opts.credentials.get(host)), this.fetchFn);
  }

  repository(ref: Reference, push = false): Repository {
    return new Repository(this, ref, push);
  }
}

export interface RequestInit {
  method?: string;
  headers?: Record<string, string>;
  /** A body factory, so a retry sends it again. */
  body?: () => Body;
  signal?: AbortSignal;
  /** Scopes beyond this repository's (a cross-repository mount's source). */
  extraScopes?: string[];
}

export class Repository {
  readonly endpoints: Endpoint[];
  readonly scope: string;

  constructor(
    readonly registry: Registry,
    readonly ref: Reference,
    readonly push: boolean,
  ) {
    const all = endpointsFor(ref.domain, registry.opts.config);
    this.endpoints = push ? all.filter((e) => !e.mirror) : all;
    this.scope = ref.path ? `repository:${ref.path}:${push ? 'pull,push' : 'pull'}` : '';
  }

  get name(): string {
    return formatReference(this.ref);
  }

  /**
   * One request to one endpoint with auth and retries. Answers with any
   * status but 401 (after one authorized retry), 429 and 5xx (after retries).
   */
  async request(ep: Endpoint, path: string, init: RequestInit = {}): Promise<Response> {
    const url = /^https?:\/\//.test(path) ? path : `${ep.origin}/v2/${path}`;
    const scopes = [this.scope, ...(init.extraScopes ?? [])].filter(Boolean);
    let authRetried = false;
    const backoff = this.registry.opts.backoffMs ?? 200;
    for (let attempt = 1; ; attempt++) {
      const headers: Record<string, string> = { 'user-agent': 'ctr/0.1', ...init.headers };
      const authorization = await this.registry.authorizer.header(ep.host, scopes, init.signal);
      if (authorization) headers.authorization = authorization;
      let res: Response;
      try {
        res = await this.registry.fetchFn(url, {
          method: init.method ?? 'GET',
          headers,
          body: init.body?.(),
          redirect: 'follow',
          signal: init.signal,
          // biome-ignore lint/suspicious/noExplicitAny: undici needs duplex for stream bodies
          ...({ duplex: 'half' } as any),
        });
      } catch (err) {
        if (init.signal?.aborted) throw canceled('the transfer was canceled');
        const code = (err as { cause?: { code?: string } }).cause?.code;
        const fatal = code === 'ENOTFOUND' || code === 'ECONNREFUSED' || code === 'EAI_AGAIN';
        if (!fatal && attempt < MAX_ATTEMPTS) {
          await sleep(backoff * 2 ** (attempt - 1), undefined, { signal: init.signal }).catch(() => undefined);
          continue;
        }
        throw unavailable(`${ep.host}: ${causeOf(err)}`);
      }
      if (res.status === 401 && !authRetried) {
        authRetried = true;
        const challenge = res.headers.get('www-authenticate');
        await res.body?.cancel();
        if (await this.registry.authorizer.challenged(ep.host, challenge)) continue;
        return new Response(null, { status: 401, statusText: 'Unauthorized' });
      }
      if ((res.status >= 500 || res.status === 429) && attempt < MAX_ATTEMPTS) {
        await res.body?.cancel();
        const after = Number(res.headers.get('retry-after'));
        const wait =
          Number.isFinite(after) && after > 0 ? Math.min(after * 1000, 10_000) : backoff * 2 ** (attempt - 1);
        await sleep(wait, undefined, { signal: init.signal }).catch(() => undefined);
        if (init.signal?.aborted) throw canceled('the transfer was canceled');
        continue;
      }
      return res;
    }
  }

  /** A clear error for a failed answer; `what` names what was asked for. */
  async fail(res: Response, what: string): Promise<CtrError> {
    const msg = await registryMessage(res);
    const repo = `${this.ref.domain}/${this.ref.path}`;
    switch (res.status) {
      case 401:
        return this.push
          ? unauthenticated(`push access denied for ${repo}: authentication required`)
          : unauthenticated(
              `pull access denied for ${repo}, repository does not exist or may require 'ctrctl login': ${msg}`,
            );
      case 403:
        return permissionDenied(`${this.push ? 'push' : 'pull'} access denied for ${repo}: ${msg}`);
      case 404:
        return notFound(`${what} not found: ${msg}`);
      case 400:
      case 405:
      case 409:
      case 412:
        return failedPrecondition(`${what}: ${msg}`);
      default:
        return unavailable(`${what}: the registry answered ${msg}`);
    }
  }

  /**
   * Runs fn against each endpoint in turn (mirrors first): an endpoint that
   * is down or lacks the content passes to the next; the registry's own
   * answer (the last endpoint) is the one reported.
   */
  async #firstEndpoint<T>(fn: (ep: Endpoint) => Promise<T>): Promise<T> {
    let lastErr: unknown;
    for (const ep of this.endpoints) {
      try {
        return await fn(ep);
      } catch (err) {
        if (err instanceof CtrError && err.kind === 'Canceled') throw err;
        lastErr = err;
        if (!ep.mirror) break;
      }
    }
    throw lastErr;
  }

  /** Fetches a manifest or index by tag or digest; its digest is checked when one is known. */
  async manifest(
    reference: string,
    signal?: AbortSignal,
  ): Promise<{ bytes: Buffer; mediaType: string; digest: string }> {
    const what = `manifest for ${this.name}`;
    return this.#firstEndpoint(async (ep) => {
      const res = await this.request(ep, `${this.ref.path}/manifests/${reference}`, {
        headers: { accept: MANIFEST_ACCEPT },
        signal,
      });
      if (!res.ok) throw await this.fail(res, what);
      const bytes = await readLimited(res, MAX_MANIFEST_BYTES, what);
      const digest = sha256(bytes);
      const expected = reference.startsWith('sha256:') ? reference : res.headers.get('docker-content-digest');
      if (expected && expected !== digest)
        throw failedPrecondition(`${what}: the registry sent content with digest ${digest}, expected ${expected}`);
      return { bytes, mediaType: res.headers.get('content-type') ?? '', digest };
    });
  }

  /**
   * Opens a blob from `offset`: the response body starts at the returned
   * offset (0 when the registry ignores Range).
   */
  async blob(digest: string, offset: number, signal?: AbortSignal): Promise<{ res: Response; offset: number }> {
    return this.#firstEndpoint(async (ep) => {
      const headers: Record<string, string> = {};
      if (offset > 0) headers.range = `bytes=${offset}-`;
      const res = await this.request(ep, `${this.ref.path}/blobs/${digest}`, { headers, signal });
      if (res.status === 416 && offset > 0) {
        await res.body?.cancel();
        return this.blob(digest, 0, signal);
      }
      if (!res.ok) throw await this.fail(res, `blob ${digest}`);
      return { res, offset: res.status === 206 ? offset : 0 };
    });
  }

  // --- push ---------------------------------------------------------------

  async blobExists(digest: string, signal?: AbortSignal): Promise<boolean> {
    const res = await this.request(this.endpoints[0], `${this.ref.path}/blobs/${digest}`, { method: 'HEAD', signal });
    await res.body?.cancel();
    if (res.status === 404) return false;
    if (!res.ok) throw await this.fail(res, `blob ${digest}`);
    return true;
  }

  /** Asks the registry to link a blob from another repository of it; false when it would not. */
  async mountBlob(digest: string, from: string, signal?: AbortSignal): Promise<boolean> {
    const q = new URLSearchParams({ mount: digest, from });
    const res = await this.request(this.endpoints[0], `${this.ref.path}/blobs/uploads/?${q}`, {
      method: 'POST',
      signal,
      extraScopes: [`repository:${from}:pull`],
    });
    await res.body?.cancel();
    if (res.status === 201) return true;
    // 202: the registry started an upload instead; let it expire.
    if (res.status === 202 || res.status === 404 || res.status === 401 || res.status === 403) return false;
    throw await this.fail(res, `mount of blob ${digest}`);
  }

  /** Uploads a blob in one PUT (POST for a session, then PUT with the digest). */
  async uploadBlob(digest: string, size: number, body: () => Body, signal?: AbortSignal): Promise<void> {
    const ep = this.endpoints[0];
    const start = await this.request(ep, `${this.ref.path}/blobs/uploads/`, { method: 'POST', signal });
    await start.body?.cancel();
    if (start.status !== 202) throw await this.fail(start, `upload of blob ${digest}`);
    const location = start.headers.get('location');
    if (!location) throw internal(`upload of blob ${digest}: the registry gave no upload location`);
    const url = new URL(location, `${ep.origin}/`);
    url.searchParams.set('digest', digest);
    const put = await this.request(ep, url.toString(), {
      method: 'PUT',
      headers: { 'content-type': 'application/octet-stream', 'content-length': String(size) },
      body,
      signal,
    });
    if (put.status !== 201) throw await this.fail(put, `upload of blob ${digest}`);
    await put.body?.cancel();
  }

  async putManifest(reference: string, mediaType: string, bytes: Buffer, signal?: AbortSignal): Promise<string> {
    const res = await this.request(this.endpoints[0], `${this.ref.path}/manifests/${reference}`, {
      method: 'PUT',
      headers: { 'content-type': mediaType },
      body: () => bytes,
      signal,
    });
    if (res.status !== 201) throw await this.fail(res, `manifest ${reference}`);
    await res.body?.cancel();
    return res.headers.get('docker-content-digest') ?? sha256(bytes);
  }

  /** `/v2/` answered (with credentials if the registry wants them): for login. */
  async ping(signal?: AbortSignal): Promise<void> {
    const ep = this.endpoints.at(-1) as Endpoint;
    const res = await this.request(ep, '', { signal });
    if (res.status === 401) {
      await res.body?.cancel();
      throw unauthenticated(`${this.ref.domain}: incorrect username or password`);
    }
    if (!res.ok) throw await this.fail(res, `${this.ref.domain}/v2/`);
    await res.body?.cancel();
  }
}
