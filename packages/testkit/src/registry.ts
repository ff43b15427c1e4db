/** A real registry for tests: Debian's docker-registry on a free loopback port, optionally behind htpasswd auth. */
import { type ChildProcess, spawn } from 'node:child_process';
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
