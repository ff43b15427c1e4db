/**
 * iptables: chains of our own, named from the instance, whose whole content is
 * rendered from the database and written in one `iptables-restore --noflush`
 * transaction (declaring a chain there empties it, and nothing else is
 * touched). The built-in chains get one jump each, inserted once and removed
 * with the last network. Every rule carries a comment naming its owner.
 *
 * What the rules do, per bridge network:
 * - raw: drop packets for the subnet that did not come from its bridge (a LAN
 *   machine routing straight to a container, or another of our networks),
 *   and packets from the bridge to 127.0.0.0/8 (the bridge has route_localnet
 *   on so that ports published on 127.0.0.1 work; containers must not use it
 *   to reach the host's loopback services).
 * - nat: masquerade traffic leaving the subnet; masquerade host-local sources
 *   (127.0.0.1) and hairpinned DNAT traffic going into the bridge; DNAT for
 *   published ports. A port published on a loopback address is DNATed only in
 *   OUTPUT (locally made packets): in PREROUTING a packet addressed to
 *   127.0.0.1 can only have come from another machine, and must not reach
 *   the container (docker's long-standing leak).
 * - filter: forward replies and published ports into the bridge, traffic
 *   from the bridge out (not for --internal), drop everything else into it;
 *   accept DNS from the bridge to its gateway (our resolver).
 */
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { chainPrefix } from '@ctr/common/names';
import { isLoopback } from './ipv4.js';
import type { PortMap } from './store.js';

const run = promisify(execFile);

export interface BridgeNetworkView {
  name: string;
  bridge: string;
  subnet: string;
  gateway: string;
  internal: boolean;
  /** Serves DNS on its gateway. */
  dns: boolean;
}

export interface PublishedView {
  endpoint: string;
  network: BridgeNetworkView;
  ip: string;
  ports: PortMap[];
}

type Table = 'raw' | 'nat' | 'filter';

interface Jump {
  table: Table;
  from: string;
  /** Match before `-j`. */
  match: string[];
  to: string;
}

export class Iptables {
  readonly chains: Record<'raw' | 'dnat' | 'dnatLocal' | 'post' | 'forward' | 'input', string>;
  readonly #jumps: Jump[];
  readonly #owner: string;
  #applying: Promise<void> = Promise.resolve();
  #queued: Promise<void> | undefined;
  /** What each table's chains hold since our last write: a write skips the tables that would not change. */
  #written = new Map<Table, string>();

  constructor(readonly instance: string) {
    const p = chainPrefix(instance);
    this.chains = {
      raw: `${p}-RAW`,
      dnat: `${p}-DNAT`,
      dnatLocal: `${p}-DNATL`,
      post: `${p}-POST`,
      forward: `${p}-FWD`,
      input: `${p}-IN`,
    };
    this.#owner = `ctr:${instance}`;
    const local = ['-m', 'addrtype', '--dst-type', 'LOCAL'];
    this.#jumps = [
      { table: 'raw', from: 'PREROUTING', match: [], to: this.chains.raw },
      { table: 'nat', from: 'PREROUTING', match: local, to: this.chains.dnat },
      { table: 'nat', from: 'OUTPUT', match: local, to: this.chains.dnat },
      { table: 'nat', from: 'OUTPUT', match: local, to: this.chains.dnatLocal },
      { table: 'nat', from: 'POSTROUTING', match: [], to: this.chains.post },
      { table: 'filter', from: 'FORWARD', match: [], to: this.chains.forward },
      { table: 'filter', from: 'INPUT', match: [], to: this.chains.input },
    ];
  }

  #comment(what: string): string[] {
    return ['-m', 'comment', '--comment', `"${this.#owner} ${what}"`];
  }

  #jumpSpec(j: Jump): string {
    return [...j.match, ...this.#comment('jump'), '-j', j.to].join(' ');
  }

  /** The rules of our chains for this state, table by table. */
  render(networks: BridgeNetworkView[], published: PublishedView[]): Record<Table, string[]> {
    const ch = this.chains;
    const out: Record<Table, string[]> = { raw: [], nat: [], filter: [] };
    const add = (t: Table, chain: string, ...rule: string[]) => out[t].push([`-A ${chain}`, ...rule].join(' '));
    for (const n of networks) {
      const c = this.#comment(`network ${n.name}`).join(' ');
      const br = n.bridge;
      add('raw', ch.raw, `-d ${n.subnet} ! -i ${br}`, c, '-j DROP');
      add('raw', ch.raw, `-i ${br} -d 127.0.0.0/8`, c, '-j DROP');
      if (!n.internal) add('nat', ch.post, `-s ${n.subnet} ! -o ${br}`, c, '-j MASQUERADE');
      add('nat', ch.post, `-o ${br} -m addrtype --src-type LOCAL`, c, '-j MASQUERADE');
      add('nat', ch.post, `-s ${n.subnet} -o ${br} -m conntrack --ctstate DNAT`, c, '-j MASQUERADE');
      add('filter', ch.forward, `-o ${br} -m conntrack --ctstate RELATED,ESTABLISHED`, c, '-j ACCEPT');
      add('filter', ch.forward, `-o ${br} -m conntrack --ctstate DNAT`, c, '-j ACCEPT');
      add('filter', ch.forward, `-i ${br} -o ${br}`, c, '-j ACCEPT');
      add('filter', ch.forward, `-i ${br} ! -o ${br}`, c, n.internal ? '-j DROP' : '-j ACCEPT');
      add('filter', ch.forward, `-o ${br}`, c, '-j DROP');
      if (n.dns) {
        for (const proto of ['udp', 'tcp']) {
          add('filter', ch.input, `-i ${br} -d ${n.gateway}/32 -p ${proto} --dport 53`, c, '-j ACCEPT');
        }
      }
    }
    for (const p of published) {
      const c = this.#comment(`endpoint ${p.endpoint.slice(0, 12)} network ${p.network.name}`).join(' ');
      for (const m of p.ports) {
        const to = `-j DNAT --to-destination ${p.ip}:${m.containerPort}`;
        const match = `-p ${m.protocol} -m ${m.protocol} --dport ${m.hostPort}`;
        if (!m.hostIp || m.hostIp === '0.0.0.0') add('nat', ch.dnat, match, c, to);
        else if (isLoopback(m.hostIp)) add('nat', ch.dnatLocal, `-d ${m.hostIp}/32`, match, c, to);
        else add('nat', ch.dnat, `-d ${m.hostIp}/32`, match, c, to);
      }
    }
    return out;
  }

  /** Installs the jumps that are missing and writes every chain's content. */
  async assert(networks: BridgeNetworkView[], published: PublishedView[]): Promise<void> {
    const present = await this.#presentJumps();
    const rules = this.render(networks, published);
    const missing = this.#jumps.filter((j) => !present.has(`${j.table} ${j.from} ${this.#jumpSpec(j)}`));
    await this.#restore(rules, missing);
  }

  /**
   * Writes every chain's content (the jumps are assumed in place), as `state()`
   * says when the write starts. Writes never overlap, and callers that arrive
   * while one is queued share it: 30 attaches at once cost a few restores,
   * not 30, and each caller's change is in the write it waits for.
   */
  apply(state: () => [BridgeNetworkView[], PublishedView[]]): Promise<void> {
    if (this.#queued) return this.#queued;
    const next = this.#applying
      .catch(() => undefined)
      .then(() => {
        this.#queued = undefined;
        return this.#restore(this.render(...state()), []);
      });
    this.#queued = next;
    this.#applying = next;
    return next;
  }

  /** Removes our jumps and chains: what the last network's removal (or an idle shutdown) does. */
  async remove(): Promise<void> {
    await this.#applying.catch(() => undefined);
    this.#written.clear();
    const present = await this.#presentJumps();
    const text: string[] = [];
    for (const table of ['raw', 'nat', 'filter'] as const) {
      text.push(`*${table}`);
      const ours = this.#jumps.filter((j) => j.table === table);
      const chains = [...new Set(ours.map((j) => j.to))];
      for (const chain of chains) text.push(`:${chain} - [0:0]`);
      for (const j of ours) {
        if (present.has(`${j.table} ${j.from} ${this.#jumpSpec(j)}`)) text.push(`-D ${j.from} ${this.#jumpSpec(j)}`);
      }
      for (const chain of chains) text.push(`-X ${chain}`);
      text.push('COMMIT');
    }
    await restore(text.join('\n'));
  }

  async #restore(rules: Record<Table, string[]>, jumps: Jump[]): Promise<void> {
    const text: string[] = [];
    const tables = (['raw', 'nat', 'filter'] as const).filter(
      (t) => jumps.length > 0 || this.#written.get(t) !== rules[t].join('\n'),
    );
    if (!tables.length) return;
    for (const t of tables) this.#written.delete(t);
    for (const table of tables) {
      text.push(`*${table}`);
      const chains = [...new Set(this.#jumps.filter((j) => j.table === table).map((j) => j.to))];
      for (const chain of chains) text.push(`:${chain} - [0:0]`);
      text.push(...rules[table]);
      for (const j of jumps.filter((x) => x.table === table)) text.push(`-I ${j.from} 1 ${this.#jumpSpec(j)}`);
      text.push('COMMIT');
    }
    await restore(text.join('\n'));
    for (const t of tables) this.#written.set(t, rules[t].join('\n'));
  }

  /** Our jumps as iptables-save prints them: "table CHAIN spec". */
  async #presentJumps(): Promise<Set<string>> {
    const present = new Set<string>();
    for (const table of ['raw', 'nat', 'filter'] as const) {
      const { stdout } = await run('iptables-save', ['-t', table], { maxBuffer: 64 * 1024 * 1024 });
      for (const line of stdout.split('\n')) {
        if (!line.startsWith('-A ') || !line.includes(`"${this.#owner} jump"`)) continue;
        const [, from, ...spec] = line.split(' ');
        present.add(`${table} ${from} ${spec.join(' ')}`);
      }
    }
    return present;
  }
}

function restore(text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn('iptables-restore', ['-w', '--noflush'], { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    child.on('error', reject);
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new Error(`iptables-restore failed (${code}): ${stderr.trim()}\n${text}`));
    });
    child.stdin.end(`${text}\n`);
  });
}
