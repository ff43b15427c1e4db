/** A real registry for tests: Debian's docker-registry on a free loopback port, optionally behind htpasswd auth. */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, mustRun, signal, waitFor } from './util.js';

export interface RegistryOptions {
  auth?: { username: string; password: string };
}

export class TestRegistry {
  #child: ChildProcess | undefined;

  private constructor(
    readonly port: number,
    readonly dir: string,
    readonly auth?: { username: string; password: string },
  ) {}

  /** host:port, as in image references. */
  get host() {
    return `127.0.0.1:${this.port}`;
  }

  static async start(opts: RegistryOptions = {}): Promise<TestRegistry> {
    const r = new TestRegistry(await freePort(), await mkdtemp('/tmp/ctr-registry-'), opts.auth);
    const lines = [
      'version: 0.1',
      'log:',
      '  level: error',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(r.dir, 'data')}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${r.port}`,
    ];
    if (opts.auth) {
      const htpasswd = await mustRun('htpasswd', ['-Bbn', opts.auth.username, opts.auth.password]);
      await writeFile(join(r.dir, 'htpasswd'), htpasswd);
      lines.push('auth:', '  htpasswd:', '    realm: ctr-test', `    path: ${join(r.dir, 'htpasswd')}`);
    }
    await writeFile(join(r.dir, 'config.yml'), `${lines.join('\n')}\n`);
    r.#child = spawn('docker-registry', ['serve', join(r.dir, 'config.yml')], { stdio: 'ignore' });
    await waitFor(async () => {
      const res = await fetch(`http://${r.host}/v2/`).catch(() => undefined);
      return res && (res.status === 200 || res.status === 401);
    }, `docker-registry on ${r.host}`);
    return r;
  }

  async stop(): Promise<void> {
    const child = this.#child;
    if (child?.pid && child.exitCode === null) {
      const exited = new Promise((res) => child.once('exit', res));
      signal(child.pid, 'SIGTERM');
      await exited;
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}

export interface ProxyRequest {
  method: string;
  /** Path and query: /v2/app/blobs/sha256:… */
  path: string;
  headers: Record<string, string | string[] | undefined>;
}

export interface ProxyReply {
  status: number;
  headers?: Record<string, string>;
  body?: string | Buffer;
}

export interface ProxyHooks {
  /** Answers a request instead of the registry (undefined: pass it on). */
  respond?(req: ProxyRequest): ProxyReply | undefined | Promise<ProxyReply | undefined>;
  /** Rewrites each chunk of a registry answer's body; `sent` counts what went out before it. */
  body?(req: ProxyRequest, chunk: Buffer, sent: number): Buffer | Promise<Buffer>;
}

export interface ProxyLogEntry {
  method: string;
  path: string;
  range?: string;
  authorization?: string;
  status: number;
  /** Body bytes sent to the client (so far, while it is running). */
  bytes: number;
}

/**
 * A loopback HTTP proxy in front of a real registry that a test can make
 * misbehave (slow, corrupt, failing, answering itself) and that logs every
 * request with the bytes it sent.
 */
export class RegistryProxy {
  readonly log: ProxyLogEntry[] = [];
  hooks: ProxyHooks = {};
  #server: Server;

  private constructor(
    server: Server,
    readonly port: number,
  ) {
    this.#server = server;
  }

  get host() {
    return `127.0.0.1:${this.port}`;
  }

  static async start(upstream: string): Promise<RegistryProxy> {
    const port = await freePort();
    const [upHost, upPort] = upstream.split(':');
    const proxy: { self?: RegistryProxy } = {};
    const server = createServer((req, res) => {
      const preq: ProxyRequest = { method: req.method ?? 'GET', path: req.url ?? '/', headers: req.headers };
      const entry: ProxyLogEntry = {
        method: preq.method,
        path: preq.path,
        range: req.headers.range,
        authorization: req.headers.authorization,
        status: 0,
        bytes: 0,
      };
      proxy.self?.log.push(entry);
      void (async () => {
        const own = await proxy.self?.hooks.respond?.(preq);
        if (own) {
          entry.status = own.status;
          const body = own.body === undefined ? undefined : Buffer.from(own.body);
          res.writeHead(own.status, { ...own.headers, 'content-length': String(body?.length ?? 0) });
          entry.bytes = body?.length ?? 0;
          res.end(body);
          req.resume();
          return;
        }
        const up = httpRequest(
          { host: upHost, port: Number(upPort), method: req.method, path: req.url, headers: req.headers },
          async (upRes) => {
            entry.status = upRes.statusCode ?? 0;
            const headers = { ...upRes.headers };
            if (proxy.self?.hooks.body && preq.method === 'GET') delete headers['content-length'];
            res.writeHead(upRes.statusCode ?? 502, headers);
            try {
              for await (const c of upRes) {
                const chunk = proxy.self?.hooks.body
                  ? await proxy.self?.hooks.body(preq, c as Buffer, entry.bytes)
                  : (c as Buffer);
                if (res.destroyed) break;
                entry.bytes += chunk.length;
                if (!res.write(chunk)) await new Promise((r) => res.once('drain', r));
              }
              res.end();
            } catch {
              res.destroy();
            }
          },
        );
        up.on('error', () => res.destroy());
        req.pipe(up);
      })().catch(() => res.destroy());
    });
    await new Promise<void>((r) => server.listen(port, '127.0.0.1', r));
    proxy.self = new RegistryProxy(server, port);
    return proxy.self;
  }

  /** Requests whose path matches, in order. */
  requests(pattern: RegExp): ProxyLogEntry[] {
    return this.log.filter((e) => pattern.test(e.path));
  }

  async stop(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise((r) => this.#server.close(r));
  }
}
