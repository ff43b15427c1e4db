/**
 * A network namespace that plays another machine on the LAN, for tests that
 * must prove what such a machine can and cannot reach. It is joined to the
 * host by a veth pair on a /30 inside 100.64.0.0/10 (chosen from the instance
 * name, never a common private range). Its names carry the instance, so the
 * leak check finds it if a test forgets close().
 */
import { createHash } from 'node:crypto';
import { linkPrefix } from '@ctr/common/names';
import { mustRun, run, type RunResult } from './util.js';

export class LanHost {
  private constructor(
    readonly netns: string,
    readonly hostLink: string,
    /** The host's address on the link. */
    readonly hostIp: string,
    /** The LAN machine's address. */
    readonly peerIp: string,
  ) {}

  static async create(instance: string): Promise<LanHost> {
    const h = createHash('sha256').update(instance).digest();
    // 100.100.0.0/16 split into /30s: pick one from the hash.
    const block = ((h[0] << 8) | h[1]) & 0x3ffc;
    const base = (100 << 24) | (100 << 16) | block;
    const ip = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
    const lan = new LanHost(`ctr-${instance}-lan`, `${linkPrefix(instance)}lan`, ip(base + 1), ip(base + 2));
    const peer = `${linkPrefix(instance)}lap`;
    try {
      await mustRun('ip', ['netns', 'add', lan.netns]);
      await mustRun('ip', ['link', 'add', lan.hostLink, 'type', 'veth', 'peer', 'name', peer]);
      await mustRun('ip', ['link', 'set', peer, 'netns', lan.netns]);
      await mustRun('ip', ['addr', 'add', `${lan.hostIp}/30`, 'dev', lan.hostLink]);
      await mustRun('ip', ['link', 'set', lan.hostLink, 'up']);
      await lan.mustExec(['ip', 'link', 'set', peer, 'name', 'eth0']);
      await lan.mustExec(['ip', 'addr', 'add', `${lan.peerIp}/30`, 'dev', 'eth0']);
      await lan.mustExec(['ip', 'link', 'set', 'eth0', 'up']);
      await lan.mustExec(['ip', 'link', 'set', 'lo', 'up']);
      await lan.mustExec(['ip', 'route', 'add', 'default', 'via', lan.hostIp]);
    } catch (err) {
      await lan.close();
      throw err;
    }
    return lan;
  }

  /** Runs a command inside the LAN machine. */
  exec(argv: string[], opts: { timeoutMs?: number } = {}): Promise<RunResult> {
    return run('ip', ['netns', 'exec', this.netns, ...argv], { timeoutMs: opts.timeoutMs ?? 30_000 });
  }

  async mustExec(argv: string[]): Promise<string> {
    return mustRun('ip', ['netns', 'exec', this.netns, ...argv]);
  }

  /** Removes the namespace and the link; safe to call twice. */
  async close(): Promise<void> {
    await run('ip', ['link', 'del', this.hostLink]);
    await run('ip', ['netns', 'del', this.netns]);
  }
}
