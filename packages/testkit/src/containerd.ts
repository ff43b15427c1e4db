/**
 * containerd as a benchmark peer: Debian's package fetched with `apt-get
 * download` and unpacked into the bench's own directory (never installed,
 * no service started on the host), run with its own root, state and socket.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { waitFor } from './util.js';

/** The directory holding `containerd`, `ctr` and `containerd-shim-runc-v2`. */
export function containerdBinaries(peers: string): string {
  const dir = join(peers, 'containerd');
  if (!existsSync(join(dir, 'usr/bin/containerd'))) {
    mkdirSync(peers, { recursive: true });
    execFileSync('apt-get', ['download', '-q', 'containerd'], { cwd: peers, stdio: 'pipe' });
    const deb = readdirSync(peers).find((f) => f.startsWith('containerd_') && f.endsWith('.deb'));
    if (!deb) throw new Error('apt-get download containerd left no .deb');
    execFileSync('dpkg', ['-x', join(peers, deb), dir]);
  }
  return join(dir, 'usr/bin');
}

export interface Containerd {
  child: ChildProcess;
  address: string;
  dir: string;
  stop(): Promise<void>;
}

/** An isolated containerd (no CRI) under `dir`. */
export async function startContainerd(bin: string, dir: string): Promise<Containerd> {
  mkdirSync(dir, { recursive: true });
  const address = join(dir, 'containerd.sock');
  writeFileSync(
    join(dir, 'config.toml'),
    [
      'version = 2',
      `root = "${join(dir, 'root')}"`,
      `state = "${join(dir, 'state')}"`,
      'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
      '[grpc]',
      `  address = "${address}"`,
      '[ttrpc]',
      `  address = "${address}.ttrpc"`,
      '[debug]',
      `  address = "${address}.debug"`,
      '[metrics]',
      '  address = ""',
    ].join('\n'),
  );
  const child = spawn(join(bin, 'containerd'), ['--config', join(dir, 'config.toml')], {
    stdio: ['ignore', 'ignore', 'ignore'],
    env: { ...process.env, PATH: `${bin}:${process.env.PATH}` },
  });
  await waitFor(() => existsSync(address), 'containerd to listen', { timeoutMs: 20_000 });
  return {
    child,
    address,
    dir,
    async stop() {
      if (child.exitCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
    },
  };
}
