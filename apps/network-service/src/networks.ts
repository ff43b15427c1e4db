/**
 * Networks, sandboxes and endpoints: the database says what should exist, and
 * this module makes the kernel agree (bridges, namespaces, veths, addresses,
 * routes, port reservations, iptables rules, resolvers).
 *
 * Crash safety: every change is a row first ('creating' / 'removing'), then
 * kernel work, then the row's final state. A kill -9 at any point leaves rows
 * that start() finishes or undoes, and start() removes kernel objects that
 * carry our names but no row (veths, bridges, namespaces), so nothing leaks.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { join } from 'node:path';
import type { Config } from '@ctr/common/config';
import { alreadyExists, failedPrecondition, invalidArgument, notFound } from '@ctr/common/errors';
import type { EventBus } from '@ctr/common/events';
import type { Logger } from '@ctr/common/log';
import { bridgeName, linkPrefix, validateId } from '@ctr/common/names';
import { parseMountInfo } from '@ctr/sys/mountinfo';
import { Netlink } from '@ctr/sys/netlink';
import { createNetns, inNetns, removeNetns } from '@ctr/sys/netns';
import { type PortReservation, releasePort, reservePort } from '@ctr/sys/ports';
import { NetworkResolver } from './dns.js';
import { type BridgeNetworkView, Iptables, type PublishedView } from './iptables.js';
import { formatIp, macForIp, parseIp, Subnet } from './ipv4.js';
import { containerResolvConf, hostUpstreams, renderHosts } from './names.js';
import type { DnsSettings, EndpointRecord, NetworkRecord, PortMap, SandboxRecord, Store } from './store.js';

export const DEFAULT_MTU = 1500;
const MTU_OPTION = 'com.docker.network.driver.mtu';
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
export const PREDEFINED = ['bridge', 'host', 'none'];

export interface CreateNetworkOptions {
  name: string;
  driver?: string;
  subnet?: string;
  gateway?: string;
  ipRange?: string;
  internal?: boolean;
  labels?: Record<string, string>;
  options?: Record<string, string>;
}

export interface AttachOptions {
  containerId: string;
  network: string;
  containerName?: string;
  aliases?: string[];
  ip?: string;
  ports?: PortMap[];
  mac?: string;
  ifname?: string;
}

export interface NamesOptions {
  containerId: string;
  hostname?: string;
  domainname?: string;
  dns: DnsSettings;
  extraHosts: { hostname: string; ip: string }[];
}

const newId = () => randomBytes(32).toString('hex');

/** Serialises work per key (a container), so concurrent calls for one container see each other's result. */
class KeyedLock {
  readonly #tails = new Map<string, Promise<unknown>>();
  run<T>(key: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.#tails.get(key) ?? Promise.resolve();
    const next = prev.catch(() => undefined).then(fn);
    this.#tails.set(key, next);
    void next
      .catch(() => undefined)
      .then(() => {
        if (this.#tails.get(key) === next) this.#tails.delete(key);
      });
    return next;
  }
}

export class NetworkManager {
  readonly iptables: Iptables;
  readonly netnsDir: string;
  readonly #nl = new Netlink();
  readonly #resolvers = new Map<string, NetworkResolver>();
  readonly #reservations = new Map<string, PortReservation[]>();
  readonly #lock = new KeyedLock();
  readonly #unplugging = new Set<Promise<void>>();
  readonly #linkPrefix: string;

  constructor(
    private readonly store: Store,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly bus?: EventBus,
    /** Port of the networks' resolvers (53; tests of the resolver alone use another). */
    private readonly dnsPort = 53,
  ) {
    this.iptables = new Iptables(config.instance);
    this.netnsDir = join(config.state, 'netns');
    this.#linkPrefix = linkPrefix(config.instance);
  }

  // ------------------------------------------------------------------ start / stop

  /** Reconciles the kernel with the database: finishes or undoes interrupted work, removes strays, re-asserts the rest. */
  async start(): Promise<void> {
    mkdirSync(this.netnsDir, { recursive: true, mode: 0o711 });
    this.#ensurePredefined();
    const mounted = new Set(parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8')).map((m) => m.mountPoint));

    for (const s of this.store.sandboxes()) {
      const own = ownsNetns(s.mode);
      if (s.state === 'creating' || (own && !mounted.has(s.path))) {
        this.log.info(
          { container: s.containerId, state: s.state },
          'reconcile: releasing a sandbox whose namespace is gone',
        );
        this.#dropSandbox(s);
      }
    }
    for (const e of this.store.endpoints()) {
      if (e.state !== 'ready') {
        this.log.info({ endpoint: e.id, state: e.state }, 'reconcile: undoing an interrupted endpoint');
        this.#forgetEndpoint(e, { now: true });
      }
    }
    const sandboxPaths = new Set(this.store.sandboxes().map((s) => s.path));
    for (const f of readdirSync(this.netnsDir)) {
      const path = join(this.netnsDir, f);
      if (!sandboxPaths.has(path)) {
        this.log.info({ path }, 'reconcile: removing a namespace no sandbox owns');
        removeNetns(path);
      }
    }
    const hostIfs = new Set(this.store.endpoints().map((e) => e.hostIf));
    const bridges = new Set(this.#bridgeNetworks().map((n) => n.bridge));
    for (const l of this.#nl.links()) {
      const strayVeth = l.name.startsWith(`${this.#linkPrefix}v`) && !hostIfs.has(l.name);
      const strayBridge = l.name.startsWith(`${this.#linkPrefix}b`) && !bridges.has(l.name);
      if (strayVeth || strayBridge) {
        this.log.info({ link: l.name }, 'reconcile: removing a link no endpoint or network owns');
        this.#nl.deleteLink(l.name);
      }
    }

    for (const n of this.#bridgeNetworks()) {
      const onHost = this.#hostOverlap(Subnet.parse(n.subnet));
      if (onHost) {
        // docker0 or a LAN on 172.17.0.0/16: a bridge there would hijack the host's routes.
        this.log.error(
          { network: n.name, subnet: n.subnet, host: onHost },
          'network left down: its subnet overlaps an address of the host (set network.defaultSubnet or recreate it)',
        );
        continue;
      }
      this.#ensureBridge(n);
    }
    for (const e of this.store.endpoints()) {
      try {
        this.#reservations.set(e.id, this.#reserve(e.ports));
      } catch (err) {
        this.log.warn(
          { endpoint: e.id, err: (err as Error).message },
          'reconcile: a published port is taken by another program',
        );
      }
    }
    await this.iptables.assert(...this.#ruleState());
    for (const n of this.#bridgeNetworks()) await this.#startResolver(n);
  }

  /**
   * A clean stop. Containers keep their networking while the service is down,
   * so the kernel state stays unless nothing uses it: with no sandbox left,
   * bridges and chains go too (start() re-creates them from the database).
   */
  async stop(): Promise<void> {
    await this.#settle();
    for (const r of this.#resolvers.values()) r.stop();
    this.#resolvers.clear();
    for (const list of this.#reservations.values()) for (const r of list) releasePort(r);
    this.#reservations.clear();
    if (this.store.sandboxes().length === 0) {
      for (const n of this.#bridgeNetworks()) this.#nl.deleteLink(n.bridge);
      await this.iptables.remove();
      this.log.info('idle: removed bridges and iptables chains');
    }
    this.#nl.close();
  }

  #ensurePredefined(): void {
    const byName = new Map(this.store.networks().map((n) => [n.name, n]));
    const subnet = Subnet.parse(this.config.network.defaultSubnet);
    const gateway = formatIp(subnet.firstHost);
    const base = { ipRange: '', internal: false, labels: {}, options: {}, createdAt: new Date(), lastIp: 0 };
    const bridge = byName.get('bridge');
    if (!bridge) {
      this.store.insertNetwork({
        ...base,
        id: newId(),
        name: 'bridge',
        driver: 'bridge',
        subnet: subnet.toString(),
        gateway,
        bridge: bridgeName(this.config.instance),
        mtu: DEFAULT_MTU,
      });
    } else if (bridge.subnet !== subnet.toString()) {
      if (this.store.endpoints({ networkId: bridge.id }).length) {
        this.log.warn(
          { configured: subnet.toString(), inUse: bridge.subnet },
          'the default subnet changed but containers use the old one; it applies when they are gone',
        );
      } else {
        this.#nl.deleteLink(bridge.bridge);
        this.store.updateNetworkAddressing(bridge.id, subnet.toString(), gateway);
      }
    }
    for (const [name, driver] of [
      ['host', 'host'],
      ['none', 'null'],
    ] as const) {
      if (!byName.has(name)) {
        this.store.insertNetwork({ ...base, id: newId(), name, driver, subnet: '', gateway: '', bridge: '', mtu: 0 });
      }
    }
  }

  // ------------------------------------------------------------------ networks

  list(): NetworkRecord[] {
    return this.store.networks();
  }

  /** By name, full id, or unique id prefix, as docker resolves them. */
  find(ref: string): NetworkRecord {
    if (!ref) throw invalidArgument('a network name or id is required');
    const all = this.store.networks();
    const exact = all.find((n) => n.name === ref) ?? all.find((n) => n.id === ref);
    if (exact) return exact;
    const byPrefix = all.filter((n) => n.id.startsWith(ref));
    if (byPrefix.length === 1) return byPrefix[0];
    if (byPrefix.length > 1)
      throw failedPrecondition(`network ${ref} is ambiguous (${byPrefix.length} matches found based on ID prefix)`);
    throw notFound(`network ${ref} not found`);
  }

  async create(o: CreateNetworkOptions): Promise<NetworkRecord> {
    if (!NAME_RE.test(o.name ?? '')) {
      throw invalidArgument(
        `invalid network name ${JSON.stringify(o.name ?? '')}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed`,
      );
    }
    const driver = o.driver || 'bridge';
    if (driver === 'host' || driver === 'null')
      throw failedPrecondition(`only one instance of "${driver}" network is allowed`);
    if (driver !== 'bridge') throw invalidArgument(`network driver "${driver}" is not supported: use bridge`);
    if (this.store.networks().some((n) => n.name === o.name))
      throw alreadyExists(`network with name ${o.name} already exists`);
    const options = o.options ?? {};
    const mtu = options[MTU_OPTION] ? Number(options[MTU_OPTION]) : DEFAULT_MTU;
    if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535)
      throw invalidArgument(`invalid MTU ${options[MTU_OPTION]}: must be 68-65535`);

    const subnet = o.subnet ? Subnet.parse(o.subnet) : this.#allocateSubnet();
    if (subnet.prefix > 30) throw invalidArgument(`subnet ${subnet} is too small: a network needs at least a /30`);
    const onHost = this.#hostOverlap(subnet);
    if (onHost)
      throw failedPrecondition(`subnet ${subnet} overlaps the host's ${onHost}: choose another with --subnet`);
    const clash = this.#bridgeNetworks().find((n) => Subnet.parse(n.subnet).overlaps(subnet));
    if (clash)
      throw failedPrecondition(
        `invalid pool request: Pool overlaps with other one on this address space (${subnet} and network ${clash.name}'s ${clash.subnet})`,
      );
    let gateway = subnet.firstHost;
    if (o.gateway) {
      gateway = parseIp(o.gateway, 'gateway');
      if (!subnet.contains(gateway) || gateway === subnet.base || gateway === subnet.broadcast) {
        throw invalidArgument(`invalid gateway ${o.gateway}: not a host address of subnet ${subnet}`);
      }
    }
    if (o.ipRange) {
      const range = Subnet.parse(o.ipRange);
      if (!subnet.contains(range.base) || !subnet.contains(range.broadcast)) {
        throw invalidArgument(`invalid ip-range ${o.ipRange}: not inside subnet ${subnet}`);
      }
    }
    const id = newId();
    const record: NetworkRecord = {
      id,
      name: o.name,
      driver: 'bridge',
      subnet: subnet.toString(),
      gateway: formatIp(gateway),
      ipRange: o.ipRange ?? '',
      bridge: `${this.#linkPrefix}b${id.slice(0, 7)}`,
      internal: !!o.internal,
      mtu,
      labels: o.labels ?? {},
      options,
      createdAt: new Date(),
      lastIp: 0,
    };
    this.store.insertNetwork(record);
    try {
      this.#ensureBridge(record);
      await this.#applyRules();
      await this.#startResolver(record);
    } catch (err) {
      this.#resolvers.get(id)?.stop();
      this.#resolvers.delete(id);
      this.store.deleteNetwork(id);
      this.#nl.deleteLink(record.bridge);
      await this.#applyRules().catch(() => undefined);
      throw err;
    }
    void this.bus?.publish('networkCreated', { id, name: record.name });
    return record;
  }

  /** An address of the host, on a link that is not one of our bridges, inside `subnet` (docker0's 172.17.0.1/16, a LAN...). */
  #hostOverlap(subnet: Subnet): string | undefined {
    const ours = new Set(this.#bridgeNetworks().map((n) => n.bridge));
    const names = new Map(this.#nl.links().map((l) => [l.index, l.name]));
    for (const a of this.#nl.allAddresses()) {
      const name = names.get(a.index) ?? '';
      if (ours.has(name)) continue;
      const [ip, prefix] = a.address.split('/');
      const theirs = Subnet.of((parseIp(ip) & Subnet.of(0, Number(prefix)).mask) >>> 0, Number(prefix));
      if (theirs.overlaps(subnet) && name !== 'lo') return `${a.address} on ${name}`;
    }
    return undefined;
  }

  /** The first block of the pool that overlaps no network, ours or the host's. */
  #allocateSubnet(): Subnet {
    const pool = Subnet.parse(this.config.network.pool);
    const size = this.config.network.poolSize;
    const taken = this.#bridgeNetworks().map((n) => Subnet.parse(n.subnet));
    for (let base = pool.base; base <= pool.broadcast; base += 2 ** (32 - size)) {
      const candidate = Subnet.of(base >>> 0, size);
      if (!taken.some((t) => t.overlaps(candidate)) && !this.#hostOverlap(candidate)) return candidate;
    }
    throw failedPrecondition(`could not find an available, non-overlapping subnet in the pool ${pool}: give --subnet`);
  }

  async remove(ref: string): Promise<NetworkRecord> {
    const n = this.find(ref);
    if (PREDEFINED.includes(n.name))
      throw failedPrecondition(`${n.name} is a pre-defined network and cannot be removed`);
    if (this.store.endpoints({ networkId: n.id }).length) {
      throw failedPrecondition(`error while removing network: network ${n.name} id ${n.id} has active endpoints`);
    }
    this.#resolvers.get(n.id)?.stop();
    this.#resolvers.delete(n.id);
    this.store.deleteNetwork(n.id);
    await this.#applyRules();
    this.#nl.deleteLink(n.bridge);
    void this.bus?.publish('networkRemoved', { id: n.id, name: n.name });
    return n;
  }

  /** Removes the user networks no endpoint uses (among those `select` picks). */
  async prune(select: (n: NetworkRecord) => boolean = () => true): Promise<string[]> {
    const removed: string[] = [];
    for (const n of this.store.networks()) {
      if (PREDEFINED.includes(n.name) || !select(n) || this.store.endpoints({ networkId: n.id }).length) continue;
      await this.remove(n.id);
      removed.push(n.name);
    }
    return removed;
  }

  #bridgeNetworks(): NetworkRecord[] {
    return this.store.networks().filter((n) => n.driver === 'bridge');
  }

  #ensureBridge(n: NetworkRecord): void {
    const subnet = Subnet.parse(n.subnet);
    if (!this.#nl.linkIndex(n.bridge)) {
      this.#nl.addBridge(n.bridge, { mtu: n.mtu, mac: randomMac() });
    }
    this.#nl.addAddress(n.bridge, n.gateway, subnet.prefix);
    this.#nl.setUp(n.bridge);
    // Ports published on 127.0.0.1 are DNATed to the bridge: the kernel must route 127/8 sources there.
    writeFileSync(`/proc/sys/net/ipv4/conf/${n.bridge}/route_localnet`, '1');
    if (readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim() !== '1') {
      writeFileSync('/proc/sys/net/ipv4/ip_forward', '1');
      this.log.info('enabled net.ipv4.ip_forward (containers route through the host)');
    }
  }

  async #startResolver(n: NetworkRecord): Promise<void> {
    if (n.name === 'bridge' || this.#resolvers.has(n.id)) return;
    const r = new NetworkResolver(
      n.gateway,
      {
        lookup: (name) => this.#lookup(n.id, name),
        upstreams: (client) => this.#upstreams(n.id, client),
      },
      this.log,
      this.dnsPort,
    );
    try {
      await r.start();
      this.#resolvers.set(n.id, r);
    } catch (err) {
      this.log.warn({ network: n.name, err: (err as Error).message }, 'dns: cannot serve names on the gateway');
    }
  }

  #lookup(networkId: string, name: string): string[] {
    const out: string[] = [];
    for (const e of this.store.endpoints({ networkId })) {
      if (e.state !== 'ready') continue;
      const names = [e.containerName, ...e.aliases].map((x) => x.toLowerCase());
      if (names.includes(name) || (name.length >= 12 && e.containerId.startsWith(name))) out.push(formatIp(e.ip));
    }
    return out;
  }

  #upstreams(networkId: string, client: string): string[] {
    const ip = parseIp(client);
    const e = this.store.endpoints({ networkId }).find((x) => x.ip === ip);
    const dns = e && this.store.sandbox(e.containerId)?.dns;
    return dns?.servers.length ? dns.servers : hostUpstreams();
  }

  // ------------------------------------------------------------------ sandboxes

  sandboxes(): SandboxRecord[] {
    return this.store.sandboxes();
  }

  sandbox(containerId: string): SandboxRecord {
    const s = this.store.sandbox(containerId);
    if (!s) throw notFound(`no network sandbox for container ${containerId}`);
    return s;
  }

  createSandbox(containerId: string, mode: string, containerName = ''): Promise<SandboxRecord> {
    validateId(containerId, 'container id');
    return this.#lock.run(containerId, async () => this.#createSandbox(containerId, mode || 'bridge', containerName));
  }

  #createSandbox(containerId: string, mode: string, containerName: string): SandboxRecord {
    const existing = this.store.sandbox(containerId);
    if (existing) return existing;
    let path = join(this.netnsDir, containerId);
    let recordedMode = mode;
    if (mode === 'host') path = '';
    else if (mode.startsWith('container:')) {
      const ref = mode.slice('container:'.length);
      const target = this.#findSandbox(ref);
      if (!target.path)
        throw failedPrecondition(`container ${ref} uses the host's network: join the host with --network host`);
      path = target.path;
      recordedMode = `container:${target.containerId}`;
    } else if (mode !== 'none' && mode !== 'bridge') {
      // A network's name: the container's namespace is a bridge one.
      const n = this.find(mode);
      recordedMode = n.driver === 'host' ? 'host' : n.driver === 'null' ? 'none' : 'bridge';
      if (recordedMode === 'host') path = '';
    }
    const record: SandboxRecord = {
      containerId,
      containerName,
      path,
      mode: recordedMode,
      state: 'creating',
      dns: undefined,
      createdAt: new Date(),
    };
    this.store.insertSandbox(record);
    try {
      if (ownsNetns(recordedMode)) {
        createNetns(path);
        const inner = inNetns(path, () => new Netlink());
        try {
          inner.setUp('lo');
        } finally {
          inner.close();
        }
      }
      this.store.setSandboxState(containerId, 'ready');
    } catch (err) {
      if (ownsNetns(recordedMode)) removeNetns(path);
      this.store.deleteSandbox(containerId);
      throw err;
    }
    return { ...record, state: 'ready' };
  }

  #findSandbox(ref: string): SandboxRecord {
    const all = this.store.sandboxes();
    const found =
      all.find((s) => s.containerId === ref) ??
      all.find((s) => s.containerName === ref) ??
      (() => {
        const byPrefix = all.filter((s) => s.containerId.startsWith(ref));
        return byPrefix.length === 1 ? byPrefix[0] : undefined;
      })();
    if (!found) throw notFound(`no such container: ${ref}`);
    return found;
  }

  /** A sandbox by id, id prefix or name (what `network connect` is given). */
  findSandbox(ref: string): SandboxRecord {
    return this.#findSandbox(ref);
  }

  removeSandbox(containerId: string): Promise<void> {
    return this.#lock.run(containerId, async () => {
      const s = this.store.sandbox(containerId);
      if (!s) return;
      await this.#detach(containerId, undefined);
      this.#dropSandbox(s);
    });
  }

  /** Forgets a sandbox: its endpoints' links and rows, its namespace. */
  #dropSandbox(s: SandboxRecord): void {
    for (const e of this.store.endpoints({ containerId: s.containerId })) this.#forgetEndpoint(e);
    if (ownsNetns(s.mode)) removeNetns(s.path);
    this.store.deleteSandbox(s.containerId);
  }

  // ------------------------------------------------------------------ endpoints

  endpoints(filter: { containerId?: string; network?: string } = {}): EndpointRecord[] {
    const networkId = filter.network ? this.find(filter.network).id : undefined;
    return this.store.endpoints({ containerId: filter.containerId || undefined, networkId });
  }

  attach(o: AttachOptions): Promise<EndpointRecord> {
    validateId(o.containerId, 'container id');
    return this.#lock.run(o.containerId, () => this.#attach(o));
  }

  async #attach(o: AttachOptions): Promise<EndpointRecord> {
    const n = this.find(o.network || 'bridge');
    let s = this.store.sandbox(o.containerId);
    if (!s) s = this.#createSandbox(o.containerId, 'bridge', o.containerName ?? '');
    if (s.mode !== 'bridge' || n.driver !== 'bridge') {
      const what = s.mode !== 'bridge' ? `network mode ${s.mode}` : `the ${n.driver} driver`;
      throw failedPrecondition(
        `container ${o.containerId.slice(0, 12)} cannot be connected to network ${n.name}: ${what} has no endpoints`,
      );
    }
    const mine = this.store.endpoints({ containerId: o.containerId });
    const existing = mine.find((e) => e.networkId === n.id);
    if (existing?.state === 'ready') return existing;
    const ports = (o.ports ?? []).map(validatePort);

    const subnet = Subnet.parse(n.subnet);
    const gateway = parseIp(n.gateway);
    const id = newId();
    const ifname = o.ifname || nextIfname(mine.map((e) => e.ifname));
    const record = this.store.tx(() => {
      const used = new Set(this.store.endpoints({ networkId: n.id }).map((e) => e.ip));
      const ip = o.ip ? this.#staticIp(o.ip, subnet, gateway, used) : this.#nextIp(n, subnet, gateway, used);
      const e: EndpointRecord = {
        id,
        networkId: n.id,
        containerId: o.containerId,
        containerName: o.containerName || s.containerName,
        ifname,
        hostIf: `${this.#linkPrefix}v${id.slice(0, 7)}`,
        mac: o.mac || macForIp(ip),
        ip,
        aliases: o.aliases ?? [],
        ports,
        state: 'creating',
        createdAt: new Date(),
      };
      this.store.insertEndpoint(e);
      if (!o.ip) this.store.setLastIp(n.id, ip);
      return e;
    });

    try {
      this.#plumb(record, n, s.path, subnet.prefix);
      const reservations = this.#reserve(ports);
      this.#reservations.set(id, reservations);
      record.ports = ports.map((p, i) => ({ ...p, hostPort: reservations[i].port }));
      this.store.finishEndpoint(id, record.ports);
      record.state = 'ready';
      await this.#applyRules();
    } catch (err) {
      // A failed attach leaves nothing, its veth included, by the time it answers.
      this.#forgetEndpoint(record, { now: true });
      await this.#applyRules().catch(() => undefined);
      throw err;
    }
    void this.bus?.publish('networkAttached', {
      networkId: n.id,
      networkName: n.name,
      containerId: o.containerId,
      ipv4Address: formatIp(record.ip),
    });
    return record;
  }

  #staticIp(text: string, subnet: Subnet, gateway: number, used: Set<number>): number {
    const ip = parseIp(text);
    if (!subnet.contains(ip))
      throw invalidArgument(`invalid address ${text}: it is not in the network's subnet ${subnet}`);
    if (ip === subnet.base || ip === subnet.broadcast)
      throw invalidArgument(`invalid address ${text}: not a host address of ${subnet}`);
    if (ip === gateway || used.has(ip)) throw alreadyExists(`Address already in use: ${text}`);
    return ip;
  }

  /** The next free address after the last one handed out (wrapping), so a released address is not reused at once. */
  #nextIp(n: NetworkRecord, subnet: Subnet, gateway: number, used: Set<number>): number {
    const range = n.ipRange ? Subnet.parse(n.ipRange) : subnet;
    const first = Math.max(range.base, subnet.firstHost);
    const last = Math.min(range.broadcast, subnet.lastHost);
    const count = last - first + 1;
    const start = n.lastIp >= first && n.lastIp <= last ? n.lastIp - first + 1 : 0;
    for (let i = 0; i < count; i++) {
      const ip = first + ((start + i) % count);
      if (ip !== gateway && !used.has(ip)) return ip;
    }
    throw failedPrecondition(`no available addresses on network ${n.name} (${n.subnet})`);
  }

  /** veth with its host side on the bridge, `ifname` inside with the address, lo up, and the default route. */
  #plumb(e: EndpointRecord, n: NetworkRecord, netns: string, prefix: number): void {
    const master = this.#nl.linkIndex(n.bridge);
    if (!master)
      throw failedPrecondition(
        `network ${n.name} is down: its bridge ${n.bridge} does not exist (see the network-service log)`,
      );
    const fd = openSync(netns, 'r');
    try {
      this.#nl.addVeth({
        name: e.hostIf,
        peerName: e.ifname,
        peerNetnsFd: fd,
        mtu: n.mtu,
        peerMac: e.mac,
        master,
      });
    } finally {
      closeSync(fd);
    }
    this.#nl.setUp(e.hostIf);
    try {
      // Hairpin: a container may reach itself through a published port when the bridge filters (br_netfilter).
      writeFileSync(`/sys/class/net/${e.hostIf}/brport/hairpin_mode`, '1');
    } catch {}
    const inner = inNetns(netns, () => new Netlink());
    try {
      inner.addAddress(e.ifname, formatIp(e.ip), prefix);
      inner.setUp(e.ifname);
      try {
        inner.addDefaultRoute(e.ifname, n.gateway);
      } catch (err) {
        // The first network keeps the default route, as docker's first network does.
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    } finally {
      inner.close();
    }
  }

  #reserve(ports: PortMap[]): PortReservation[] {
    const held: PortReservation[] = [];
    try {
      for (const p of ports) {
        try {
          held.push(reservePort(p.protocol, p.hostIp || '0.0.0.0', p.hostPort));
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'EADDRINUSE') {
            throw failedPrecondition(
              `Bind for ${p.hostIp || '0.0.0.0'}:${p.hostPort} failed: port is already allocated`,
            );
          }
          if ((err as NodeJS.ErrnoException).code === 'EADDRNOTAVAIL') {
            throw invalidArgument(`cannot publish on ${p.hostIp}: it is not an address of this host`);
          }
          throw err;
        }
      }
    } catch (err) {
      for (const r of held) releasePort(r);
      throw err;
    }
    return held;
  }

  /**
   * Releases what an endpoint holds: its port reservations, its row and
   * address, and its veth (the peer goes with it), the veth in the background
   * unless `now`.
   */
  #forgetEndpoint(e: Pick<EndpointRecord, 'id' | 'hostIf'>, opts: { now?: boolean } = {}): void {
    this.#releaseReservations(e.id);
    if (opts.now) this.#nl.deleteLink(e.hostIf);
    else this.#unplug(e.hostIf);
    this.store.deleteEndpoint(e.id);
  }

  /**
   * Deletes a veth on a thread of libuv's pool, not waited for: the kernel
   * takes 10–20 ms to (RCU grace periods), which no caller needs to wait
   * out. Its name is never used again (an endpoint id's), its address is
   * inside a namespace that is going too, and a link that survives a crash
   * is a stray the next start() removes. stop() waits for these.
   */
  #unplug(link: string): void {
    const nl = new Netlink();
    const done: Promise<void> = nl
      .deleteLinkOffThread(link)
      .then(
        () => undefined,
        (err) => this.log.warn({ err, link }, 'cannot delete a veth (the next start removes it)'),
      )
      .finally(() => {
        nl.close();
        this.#unplugging.delete(done);
      });
    this.#unplugging.add(done);
  }

  /** Resolves once the veths being deleted are gone. */
  async #settle(): Promise<void> {
    while (this.#unplugging.size) await Promise.allSettled([...this.#unplugging]);
  }

  #releaseReservations(endpointId: string): void {
    for (const r of this.#reservations.get(endpointId) ?? []) releasePort(r);
    this.#reservations.delete(endpointId);
  }

  detach(containerId: string, network?: string): Promise<void> {
    // The container may stay, and be connected again at once: its interface must be gone by then.
    return this.#lock.run(containerId, () => this.#detach(containerId, network, { now: true }));
  }

  async #detach(containerId: string, network: string | undefined, opts: { now?: boolean } = {}): Promise<void> {
    const networkId = network ? this.find(network).id : undefined;
    const gone = this.store.endpoints({ containerId, networkId });
    if (!gone.length) return;
    for (const e of gone) this.store.setEndpointState(e.id, 'removing');
    await this.#applyRules();
    for (const e of gone) {
      this.#forgetEndpoint(e, opts);
      const n = this.store.network(e.networkId);
      void this.bus?.publish('networkDetached', { networkId: e.networkId, networkName: n?.name ?? '', containerId });
    }
  }

  // ------------------------------------------------------------------ rules

  #ruleState(): [BridgeNetworkView[], PublishedView[]] {
    const views = new Map<string, BridgeNetworkView>();
    for (const n of this.#bridgeNetworks()) {
      views.set(n.id, {
        name: n.name,
        bridge: n.bridge,
        subnet: n.subnet,
        gateway: n.gateway,
        internal: n.internal,
        dns: n.name !== 'bridge',
      });
    }
    const published: PublishedView[] = [];
    for (const e of this.store.endpoints()) {
      const network = views.get(e.networkId);
      if (!network || e.state !== 'ready' || !e.ports.length) continue;
      published.push({ endpoint: e.id, network, ip: formatIp(e.ip), ports: e.ports });
    }
    return [[...views.values()], published];
  }

  #applyRules(): Promise<void> {
    return this.iptables.apply(() => this.#ruleState());
  }

  // ------------------------------------------------------------------ names

  names(o: NamesOptions): { resolvConf: string; hosts: string; hostname: string } {
    const s = this.sandbox(o.containerId);
    this.store.setSandboxDns(o.containerId, o.dns);
    const defaultBridge = this.store.networks().find((n) => n.name === 'bridge');
    const extra = o.extraHosts.map((h) => {
      if (h.ip === 'host-gateway') {
        if (!defaultBridge) throw failedPrecondition('host-gateway: the default bridge network has no gateway');
        return { hostname: h.hostname, ip: defaultBridge.gateway };
      }
      parseIp(h.ip, `address for --add-host ${h.hostname}`);
      return h;
    });
    if (s.mode === 'host') {
      return {
        resolvConf: readText('/etc/resolv.conf'),
        hosts: `${readText('/etc/hosts')}${extra.map((h) => `${h.ip}\t${h.hostname}\n`).join('')}`,
        hostname: `${osHostname()}\n`,
      };
    }
    const hostname = o.hostname || o.containerId.slice(0, 12);
    const joined = s.mode.startsWith('container:') ? s.mode.slice('container:'.length) : s.containerId;
    const endpoints = this.store.endpoints({ containerId: joined }).filter((e) => e.state === 'ready');
    const first = endpoints[0];
    const userNetwork = endpoints
      .map((e) => this.store.network(e.networkId))
      .find((n) => n && n.name !== 'bridge' && this.#resolvers.has(n.id));
    return {
      resolvConf: containerResolvConf(o.dns, userNetwork?.gateway),
      hosts: renderHosts({ hostname, domainname: o.domainname, address: first && formatIp(first.ip), extra }),
      hostname: `${hostname}\n`,
    };
  }
}

const ownsNetns = (mode: string) => mode === 'bridge' || mode === 'none';

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

function randomMac(): string {
  const b = randomBytes(6);
  b[0] = 0x02;
  b[1] = 0x42;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

function nextIfname(taken: string[]): string {
  for (let i = 0; ; i++) if (!taken.includes(`eth${i}`)) return `eth${i}`;
}

function validatePort(p: PortMap): PortMap {
  const protocol = (p.protocol || 'tcp').toLowerCase();
  if (protocol !== 'tcp' && protocol !== 'udp')
    throw invalidArgument(`invalid protocol ${JSON.stringify(p.protocol)}: use tcp or udp`);
  if (!Number.isInteger(p.containerPort) || p.containerPort < 1 || p.containerPort > 65535) {
    throw invalidArgument(`invalid container port ${p.containerPort}: must be 1-65535`);
  }
  if (!Number.isInteger(p.hostPort) || p.hostPort < 0 || p.hostPort > 65535) {
    throw invalidArgument(`invalid host port ${p.hostPort}: must be 0-65535`);
  }
  const hostIp = p.hostIp || '0.0.0.0';
  if (hostIp.includes(':')) throw invalidArgument(`invalid host address ${hostIp}: IPv6 publishing is not supported`);
  parseIp(hostIp, 'host address');
  return { protocol, containerPort: p.containerPort, hostPort: p.hostPort, hostIp };
}
