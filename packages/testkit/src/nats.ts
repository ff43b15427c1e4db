/** A standalone nats-server with JetStream for event-bus tests: restartable on the same port and store. */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { freePort, signal, waitFor } from './util.js';

const binary = () => process.env.CTR_NATS_SERVER ?? '/usr/sbin/nats-server';

function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port });
    s.once('data', (d) => {
      s.destroy();
      resolve(d.toString().startsWith('INFO'));
    });
    s.once('error', () => resolve(false));
  });
}

export class TestNats {
  #child: ChildProcess | undefined;

  private constructor(
    readonly port: number,
    readonly dir: string,
  ) {}

  static async start(): Promise<TestNats> {
    const n = new TestNats(await freePort(), await mkdtemp('/tmp/ctr-nats-'));
    await n.startServer();
    return n;
  }

  get url() {
    return `nats://127.0.0.1:${this.port}`;
  }

  get pid() {
    return this.#child?.pid;
  }

  async startServer(): Promise<void> {
    this.#child = spawn(binary(), ['-js', '-sd', join(this.dir, 'js'), '-a', '127.0.0.1', '-p', String(this.port)], {
      stdio: 'ignore',
    });
    await waitFor(() => answers(this.port), `nats-server on port ${this.port}`);
  }

  /** SIGKILL, as a crash. */
  async kill(): Promise<void> {
    const child = this.#child;
    if (!child?.pid || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    signal(child.pid, 'SIGKILL');
    await exited;
  }

  async stop(): Promise<void> {
    const child = this.#child;
    if (child?.pid && child.exitCode === null) {
      const exited = new Promise((r) => child.once('exit', r));
      signal(child.pid, 'SIGTERM');
      await exited;
    }
    await rm(this.dir, { recursive: true, force: true });
  }
}
