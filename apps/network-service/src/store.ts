/**
 * The network-service's database: networks, sandboxes (a container's
 * namespace), endpoints (a sandbox on a network: its address, veth and port
 * maps). SQLite with a write-ahead journal: a kill -9 leaves each change whole
 * or absent, and the kernel's state (links, rules) is re-derived from here.
 *
 * synchronous=NORMAL: with the write-ahead log, a killed process loses no
 * committed transaction (they are in the OS's cache), only a power cut can
 * drop the last ones, and a power cut also ends every namespace and link they
 * describe (the state dir is a tmpfs), which start() then releases. Skipping
 * the fsync per commit halves an attach's time.
 *
 * An address is held by its endpoint row, so allocation and release are the
 * row's insert and delete: transactional by construction. Rows carry a state
 * so that work a crash cut short ('creating', 'removing') is finished or
 * undone on the next start.
 */
import type { DatabaseSync } from 'node:sqlite';
import { openDatabase, transaction } from '@ctr/common/sqlite';

export type Driver = 'bridge' | 'host' | 'null';

export interface NetworkRecord {
  id: string;
  name: string;
  driver: Driver;
  /** Empty for host and null. */
  subnet: string;
  gateway: string;
  ipRange: string;
  bridge: string;
  internal: boolean;
  mtu: number;
  labels: Record<string, string>;
  options: Record<string, string>;
  createdAt: Date;
  /** The last address handed out, so the next one starts after it (no immediate reuse). */
  lastIp: number;
}

export interface DnsSettings {
  servers: string[];
  search: string[];
  options: string[];
}

export interface SandboxRecord {
  containerId: string;
  containerName: string;
  /** The bind-mounted namespace; empty for host. */
  path: string;
  mode: string;
  state: 'creating' | 'ready';
  dns: DnsSettings | undefined;
  createdAt: Date;
}

export interface PortMap {
  protocol: 'tcp' | 'udp';
  containerPort: number;
  hostPort: number;
  hostIp: string;
}

export interface EndpointRecord {
  id: string;
  networkId: string;
  containerId: string;
  containerName: string;
  ifname: string;
  hostIf: string;
  mac: string;
  ip: number;
  aliases: string[];
  ports: PortMap[];
  state: 'creating' | 'ready' | 'removing';
  createdAt: Date;
}

type Row = Record<string, string | number | null>;

const toNetwork = (r: Row): NetworkRecord => ({
  id: r.id as string,
  name: r.name as string,
  driver: r.driver as Driver,
  subnet: r.subnet as string,
  gateway: r.gateway as string,
  ipRange: r.ip_range as string,
  bridge: r.bridge as string,
  internal: r.internal === 1,
  mtu: r.mtu as number,
  labels: JSON.parse(r.labels as string),
  options: JSON.parse(r.options as string),
  createdAt: new Date(r.created_at as number),
  lastIp: r.last_ip as number,
});

const toSandbox = (r: Row): SandboxRecord => ({
  containerId: r.container_id as string,
  containerName: r.container_name as string,
  path: r.path as string,
  mode: r.mode as string,
  state: r.state as SandboxRecord['state'],
  dns: r.dns ? JSON.parse(r.dns as string) : undefined,
  createdAt: new Date(r.created_at as number),
});

const toEndpoint = (r: Row): EndpointRecord => ({
  id: r.id as string,
  networkId: r.network_id as string,
  containerId: r.container_id as string,
  containerName: r.container_name as string,
  ifname: r.ifname as string,
  hostIf: r.host_if as string,
  mac: r.mac as string,
  ip: r.ip as number,
  aliases: JSON.parse(r.aliases as string),
  ports: JSON.parse(r.ports as string),
  state: r.state as EndpointRecord['state'],
  createdAt: new Date(r.created_at as number),
});

export class Store {
  readonly #db: DatabaseSync;

  constructor(path: string) {
    this.#db = openDatabase(path, 'NORMAL');
    this.#db.exec(`
      CREATE TABLE IF NOT EXISTS networks (
        id TEXT PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        driver TEXT NOT NULL,
        subnet TEXT NOT NULL,
        gateway TEXT NOT NULL,
        ip_range TEXT NOT NULL,
        bridge TEXT NOT NULL,
        internal INTEGER NOT NULL,
        mtu INTEGER NOT NULL,
        labels TEXT NOT NULL,
        options TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        last_ip INTEGER NOT NULL DEFAULT 0
      );
      CREATE TABLE IF NOT EXISTS sandboxes (
        container_id TEXT PRIMARY KEY,
        container_name TEXT NOT NULL,
        path TEXT NOT NULL,
        mode TEXT NOT NULL,
        state TEXT NOT NULL,
        dns TEXT,
        created_at INTEGER NOT NULL
      );
      CREATE TABLE IF NOT EXISTS endpoints (
        id TEXT PRIMARY KEY,
        network_id TEXT NOT NULL REFERENCES networks(id),
        container_id TEXT NOT NULL REFERENCES sandboxes(container_id),
        container_name TEXT NOT NULL,
        ifname TEXT NOT NULL,
        host_if TEXT NOT NULL,
        mac TEXT NOT NULL,
        ip INTEGER NOT NULL,
        aliases TEXT NOT NULL,
        ports TEXT NOT NULL,
        state TEXT NOT NULL,
        created_at INTEGER NOT NULL,
        UNIQUE (network_id, container_id),
        UNIQUE (network_id, ip)
      );
    `);
  }

  close(): void {
    this.#db.close();
  }

  /** Runs `fn` in one transaction (BEGIN IMMEDIATE: the write lock is taken up front). */
  tx<T>(fn: () => T): T {
    return transaction(this.#db, fn);
  }

  // --- networks

  networks(): NetworkRecord[] {
    return (this.#db.prepare('SELECT * FROM networks ORDER BY created_at, name').all() as Row[]).map(toNetwork);
  }

  network(id: string): NetworkRecord | undefined {
    const r = this.#db.prepare('SELECT * FROM networks WHERE id = ?').get(id) as Row | undefined;
    return r && toNetwork(r);
  }

  insertNetwork(n: NetworkRecord): void {
    this.#db
      .prepare(
        `INSERT INTO networks (id, name, driver, subnet, gateway, ip_range, bridge, internal, mtu, labels, options, created_at, last_ip)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        n.id,
        n.name,
        n.driver,
        n.subnet,
        n.gateway,
        n.ipRange,
        n.bridge,
        n.internal ? 1 : 0,
        n.mtu,
        JSON.stringify(n.labels),
        JSON.stringify(n.options),
        n.createdAt.getTime(),
        n.lastIp,
      );
  }

  updateNetworkAddressing(id: string, subnet: string, gateway: string): void {
    this.#db.prepare('UPDATE networks SET subnet = ?, gateway = ?, last_ip = 0 WHERE id = ?').run(subnet, gateway, id);
  }

  deleteNetwork(id: string): void {
    this.#db.prepare('DELETE FROM networks WHERE id = ?').run(id);
  }

  setLastIp(networkId: string, ip: number): void {
    this.#db.prepare('UPDATE networks SET last_ip = ? WHERE id = ?').run(ip, networkId);
  }

  // --- sandboxes

  sandboxes(): SandboxRecord[] {
    return (this.#db.prepare('SELECT * FROM sandboxes ORDER BY created_at').all() as Row[]).map(toSandbox);
  }

  sandbox(containerId: string): SandboxRecord | undefined {
    const r = this.#db.prepare('SELECT * FROM sandboxes WHERE container_id = ?').get(containerId) as Row | undefined;
    return r && toSandbox(r);
  }

  insertSandbox(s: SandboxRecord): void {
    this.#db
      .prepare(
        'INSERT INTO sandboxes (container_id, container_name, path, mode, state, dns, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)',
      )
      .run(
        s.containerId,
        s.containerName,
        s.path,
        s.mode,
        s.state,
        s.dns ? JSON.stringify(s.dns) : null,
        s.createdAt.getTime(),
      );
  }

  setSandboxState(containerId: string, state: SandboxRecord['state']): void {
    this.#db.prepare('UPDATE sandboxes SET state = ? WHERE container_id = ?').run(state, containerId);
  }

  setSandboxDns(containerId: string, dns: DnsSettings): void {
    this.#db.prepare('UPDATE sandboxes SET dns = ? WHERE container_id = ?').run(JSON.stringify(dns), containerId);
  }

  deleteSandbox(containerId: string): void {
    this.#db.prepare('DELETE FROM sandboxes WHERE container_id = ?').run(containerId);
  }

  // --- endpoints

  endpoints(filter: { networkId?: string; containerId?: string } = {}): EndpointRecord[] {
    const where: string[] = [];
    const args: string[] = [];
    if (filter.networkId) {
      where.push('network_id = ?');
      args.push(filter.networkId);
    }
    if (filter.containerId) {
      where.push('container_id = ?');
      args.push(filter.containerId);
    }
    const sql = `SELECT * FROM endpoints${where.length ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at, id`;
    return (this.#db.prepare(sql).all(...args) as Row[]).map(toEndpoint);
  }

  insertEndpoint(e: EndpointRecord): void {
    this.#db
      .prepare(
        `INSERT INTO endpoints (id, network_id, container_id, container_name, ifname, host_if, mac, ip, aliases, ports, state, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
        e.id,
        e.networkId,
        e.containerId,
        e.containerName,
        e.ifname,
        e.hostIf,
        e.mac,
        e.ip,
        JSON.stringify(e.aliases),
        JSON.stringify(e.ports),
        e.state,
        e.createdAt.getTime(),
      );
  }

  finishEndpoint(id: string, ports: PortMap[]): void {
    this.#db.prepare("UPDATE endpoints SET ports = ?, state = 'ready' WHERE id = ?").run(JSON.stringify(ports), id);
  }

  setEndpointState(id: string, state: EndpointRecord['state']): void {
    this.#db.prepare('UPDATE endpoints SET state = ? WHERE id = ?').run(state, id);
  }

  deleteEndpoint(id: string): void {
    this.#db.prepare('DELETE FROM endpoints WHERE id = ?').run(id);
  }
}
