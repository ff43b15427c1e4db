/**
 * Registry credentials: our own store (written by `login`, mode 0600) and,
 * read-only, docker's config.json (`$DOCKER_CONFIG/config.json`, else
 * `~/.docker/config.json`) so a docker user's logins work unchanged.
 */
import { chmod, mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { invalidArgument } from '@ctr/common/errors';
import { writeFileAtomicSync } from '@ctr/common/fsutil';

export interface Credentials {
  username: string;
  password: string;
  /** An OAuth2 refresh token some registries hand out instead of a password. */
  identityToken?: string;
}

interface AuthFile {
  auths: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
}

/** docker.io's entry in config.json is keyed by its legacy index address. */
const DOCKER_HUB_KEYS = ['https://index.docker.io/v1/', 'index.docker.io', 'docker.io', 'registry-1.docker.io'];

function keysFor(host: string): string[] {
  if (host === 'docker.io') return DOCKER_HUB_KEYS;
  return [host, `https://${host}`, `http://${host}`, `https://${host}/v1/`];
}

function decode(entry: AuthFile['auths'][string] | undefined): Credentials | undefined {
  if (!entry) return undefined;
  if (entry.auth) {
    const text = Buffer.from(entry.auth, 'base64').toString('utf8');
    const colon = text.indexOf(':');
    if (colon > 0) return { username: text.slice(0, colon), password: text.slice(colon + 1) };
  }
  if (entry.username) return { username: entry.username, password: entry.password ?? '' };
  if (entry.identitytoken) return { username: '<token>', password: '', identityToken: entry.identitytoken };
  return undefined;
}

async function readAuthFile(path: string): Promise<AuthFile> {
  const text = await readFile(path, 'utf8').catch(() => '');
  if (!text) return { auths: {} };
  try {
    const doc = JSON.parse(text) as Partial<AuthFile>;
    return { auths: doc.auths ?? {} };
  } catch {
    return { auths: {} };
  }
}

export class CredentialStore {
  constructor(
    /** Our own file, written by login. */
    readonly path: string,
    /** docker's config.json, read only. */
    readonly dockerConfig = join(process.env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json'),
  ) {}

  async get(host: string): Promise<Credentials | undefined> {
    for (const file of [this.path, this.dockerConfig]) {
      const { auths } = await readAuthFile(file);
      for (const key of keysFor(host)) {
        const found = decode(auths[key]);
        if (found) return found;
      }
    }
    return undefined;
  }

  async set(host: string, creds: Credentials): Promise<void> {
    if (!creds.username) throw invalidArgument('a username is required');
    const file = await readAuthFile(this.path);
    for (const key of keysFor(host)) delete file.auths[key];
    file.auths[host] = { auth: Buffer.from(`${creds.username}:${creds.password}`).toString('base64') };
    await this.#write(file);
  }

  /** Forgets a host; false when we held nothing for it. */
  async remove(host: string): Promise<boolean> {
    const file = await readAuthFile(this.path);
    let found = false;
    for (const key of keysFor(host)) {
      if (file.auths[key]) found = true;
      delete file.auths[key];
    }
    if (found) await this.#write(file);
    return found;
  }

  async #write(file: AuthFile): Promise<void> {
    await mkdir(dirname(this.path), { recursive: true, mode: 0o700 });
    writeFileAtomicSync(this.path, `${JSON.stringify(file, null, 2)}\n`, 0o600);
    await chmod(this.path, 0o600);
  }
}
