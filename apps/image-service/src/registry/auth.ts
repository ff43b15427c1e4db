/**
 * Registry authorization (distribution's token spec): a 401 names a scheme in
 * WWW-Authenticate; Basic sends the credentials each time, Bearer fetches a
 * token for the request's scopes from the realm (with the credentials as
 * Basic auth when there are any, anonymously otherwise) and caches it until
 * it expires.
 */
import { unauthenticated } from '@ctr/common/errors';
import type { Credentials } from './credentials.js';

export interface Challenge {
  scheme: 'basic' | 'bearer';
  params: Record<string, string>;
}

/** Parses a WWW-Authenticate value; the first Bearer or Basic challenge wins. */
export function parseChallenge(header: string | null): Challenge | undefined {
  if (!header) return undefined;
  const m = /^\s*(Bearer|Basic)\b(.*)$/i.exec(header);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  for (const p of m[2].matchAll(/([A-Za-z_][\w-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g))
    params[p[1].toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3];
  return { scheme: m[1].toLowerCase() as Challenge['scheme'], params };
}

interface Token {
  value: string;
  expiresAt: number;
}

export type CredentialLookup = (host: string) => Promise<Credentials | undefined>;

export class Authorizer {
  readonly #challenges = new Map<string, Challenge>();
  readonly #tokens = new Map<string, Token>();

  constructor(
    private readonly lookup: CredentialLookup,
    private readonly fetchFn: typeof fetch = fetch,
  ) {}

  /** The Authorization header for a request to `host` needing `scopes`, if we know how. */
  async header(host: string, scopes: string[], signal?: AbortSignal): Promise<string | undefined> {
    const ch = this.#challenges.get(host);
    if (!ch) return undefined;
    if (ch.scheme === 'basic') {
      const creds = await this.lookup(host);
      return creds ? basic(creds) : undefined;
    }
    const key = `${host} ${scopes.join(' ')}`;
    const cached = this.#tokens.get(key);
    if (cached && cached.expiresAt > Date.now()) return `Bearer ${cached.value}`;
    const token = await this.#fetchToken(host, ch, scopes, signal);
    this.#tokens.set(key, token);
    return `Bearer ${token.value}`;
  }

  /**
   * Learns from a 401. True when a retry can succeed (a scheme we speak, and
   * for Basic, credentials to send); a token is fetched on the retry. Callers
   * retry once per request.
   */
  async challenged(host: string, header: string | null): Promise<boolean> {
    const ch = parseChallenge(header);
    if (!ch) return false;
    this.#challenges.set(host, ch);
    for (const key of this.#tokens.keys()) if (key.startsWith(`${host} `)) this.#tokens.delete(key);
    return ch.scheme === 'bearer' || (await this.lookup(host)) !== undefined;
  }

  async #fetchToken(host: string, ch: Challenge, scopes: string[], signal?: AbortSignal): Promise<Token> {
    const realm = ch.params.realm;
    if (!realm) throw unauthenticated(`${host}: bearer challenge without a realm`);
    const url = new URL(realm);
    if (ch.params.service) url.searchParams.set('service', ch.params.service);
    for (const s of scopes) url.searchParams.append('scope', s);
    const creds = await this.lookup(host);
    const headers: Record<string, string> = {};
    if (creds && !creds.identityToken) headers.authorization = basic(creds);
    let res: Response;
    try {
      res = await this.fetchFn(url, { headers, signal });
    } catch (err) {
      throw unauthenticated(`${host}: cannot reach the token server ${url.origin}: ${causeOf(err)}`);
    }
    if (res.status === 401 || res.status === 403) {
      await res.body?.cancel();
      throw unauthenticated(`${host}: ${creds ? 'incorrect username or password' : 'authentication required'}`);
    }
    if (!res.ok) {
      await res.body?.cancel();
      throw unauthenticated(`${host}: the token server answered ${res.status} ${res.statusText}`);
    }
    const body = (await res.json().catch(() => ({}))) as { token?: string; access_token?: string; expires_in?: number };
    const value = body.token ?? body.access_token;
    if (!value) throw unauthenticated(`${host}: the token server sent no token`);
    // Refresh a little early; the spec's default lifetime is 60 s.
    const life = Math.max(10, body.expires_in ?? 60) * 1000;
    return { value, expiresAt: Date.now() + life - 5000 };
  }
}

export const basic = (c: Credentials) => `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;

/** The system-level reason of a failed fetch: "connect ECONNREFUSED 127.0.0.1:1". */
export function causeOf(err: unknown): string {
  const e = err as { cause?: { code?: string; message?: string; hostname?: string }; message?: string };
  const cause = e?.cause;
  if (cause?.code === 'ENOTFOUND' || cause?.code === 'EAI_AGAIN') return `lookup ${cause.hostname ?? ''}: no such host`;
  return cause?.message ?? e?.message ?? String(err);
}
