/** The Networks API (`ctr.networks.v1`): what container-service and ctrctl's network commands call. */
import {
  type Endpoint,
  type NamesRequest,
  type NamesResponse,
  type Network,
  NetworksService,
  type PortMapping,
  type Sandbox,
} from '@ctr/api/networks/v1/networks';
import { invalidArgument } from '@ctr/common/errors';
import { type Handlers, implement } from '@ctr/common/grpc';
import { formatIp, Subnet } from './ipv4.js';
import { type NetworkManager, PREDEFINED } from './networks.js';
import type { EndpointRecord, NetworkRecord, PortMap, SandboxRecord } from './store.js';

export function toApiEndpoint(
  e: EndpointRecord,
  networks: Map<string, NetworkRecord>,
  sandboxes: Map<string, SandboxRecord>,
): Endpoint {
  const n = networks.get(e.networkId);
  return {
    id: e.id,
    networkId: e.networkId,
    networkName: n?.name ?? '',
    containerId: e.containerId,
    containerName: e.containerName,
    netnsPath: sandboxes.get(e.containerId)?.path ?? '',
    interfaceName: e.ifname,
    hostInterface: e.hostIf,
    macAddress: e.mac,
    ipv4Address: formatIp(e.ip),
    prefixLength: n?.subnet ? Subnet.parse(n.subnet).prefix : 0,
    gateway: n?.gateway ?? '',
    ports: e.ports,
    aliases: e.aliases,
  };
}

const toApiSandbox = (s: SandboxRecord): Sandbox => ({
  containerId: s.containerId,
  netnsPath: s.path,
  mode: s.mode,
  containerName: s.containerName,
  createdAt: s.createdAt,
});

/**
 * `key=value` filters of `network ls` and `prune` as a predicate: name
 * (substring), id (prefix), driver, label (key or key=value), type
 * (builtin/custom). Checked once, before any network is looked at.
 */
export function networkFilter(filters: string[]): (n: NetworkRecord) => boolean {
  const groups = new Map<string, string[]>();
  for (const f of filters) {
    const eq = f.indexOf('=');
    if (eq < 1) throw invalidArgument(`invalid filter ${JSON.stringify(f)}: expected key=value`);
    const key = f.slice(0, eq);
    if (!['name', 'id', 'driver', 'label', 'type'].includes(key)) throw invalidArgument(`invalid filter '${key}'`);
    groups.set(key, [...(groups.get(key) ?? []), f.slice(eq + 1)]);
  }
  const test: Record<string, (n: NetworkRecord, v: string) => boolean> = {
    name: (n, v) => n.name.includes(v),
    id: (n, v) => n.id.startsWith(v),
    driver: (n, v) => n.driver === v,
    label: (n, v) => {
      const [k, val] = v.split(/=(.*)/s);
      return k in n.labels && (val === undefined || n.labels[k] === val);
    },
    type: (n, v) => (v === 'builtin' ? PREDEFINED.includes(n.name) : v === 'custom' && !PREDEFINED.includes(n.name)),
  };
  // Values of one key are alternatives; different keys must all match.
  return (n) => [...groups].every(([key, values]) => values.some((v) => test[key](n, v)));
}

/**
 * The API over `m`. Calls wait for `ready` (the start-up reconcile): the
 * socket is served before it ends, and a call must not see half-reconciled
 * state (nor the UNIMPLEMENTED of a server without its handlers yet).
 */
export function networksApi(m: NetworkManager, ready: Promise<void> = Promise.resolve()) {
  const maps = () => ({
    networks: new Map(m.list().map((n) => [n.id, n])),
    sandboxes: new Map(m.sandboxes().map((s) => [s.containerId, s])),
  });
  const toApiNetwork = (n: NetworkRecord, withEndpoints: boolean): Network => {
    const { networks, sandboxes } = maps();
    return {
      id: n.id,
      name: n.name,
      driver: n.driver,
      ipam: n.subnet ? [{ subnet: n.subnet, gateway: n.gateway, ipRange: n.ipRange }] : [],
      bridge: n.bridge,
      labels: n.labels,
      options: n.options,
      createdAt: n.createdAt,
      internal: n.internal,
      mtu: n.mtu,
      endpoints: withEndpoints ? m.endpoints({ network: n.id }).map((e) => toApiEndpoint(e, networks, sandboxes)) : [],
    };
  };
  // The protocol is checked by the manager; an empty one means tcp.
  const ports = (list: PortMapping[]): PortMap[] =>
    list.map((p) => ({ ...p, protocol: (p.protocol || 'tcp') as PortMap['protocol'] }));

  /** The container's name files (Names, or asked for with CreateSandbox or Attach). */
  const names = (containerId: string, req: NamesRequest): NamesResponse =>
    m.names({
      containerId,
      hostname: req.hostname,
      domainname: req.domainname,
      dns: { servers: req.dns, search: req.dnsSearch, options: req.dnsOptions },
      extraHosts: req.extraHosts,
    });

  const handlers: Handlers<typeof NetworksService> = {
    async create(req) {
      if (req.ipam.length > 1) throw invalidArgument('only one IPv4 subnet per network is supported');
      const ipam = req.ipam[0];
      const n = await m.create({
        name: req.name,
        driver: req.driver,
        subnet: ipam?.subnet || undefined,
        gateway: ipam?.gateway || undefined,
        ipRange: ipam?.ipRange || undefined,
        internal: req.internal,
        labels: req.labels,
        options: req.options,
      });
      return toApiNetwork(n, true);
    },
    async get(req) {
      return toApiNetwork(m.find(req.ref), true);
    },
    async list(req) {
      return {
        networks: m
          .list()
          .filter(networkFilter(req.filters))
          .map((n) => toApiNetwork(n, true)),
      };
    },
    async remove(req) {
      await m.remove(req.ref);
      return {};
    },
    async prune(req) {
      return { removed: await m.prune(networkFilter(req.filters)) };
    },
    async createSandbox(req) {
      const sandbox = toApiSandbox(await m.createSandbox(req.containerId, req.mode, req.containerName));
      return req.names ? { ...sandbox, names: names(req.containerId, req.names) } : sandbox;
    },
    async removeSandbox(req) {
      await m.removeSandbox(req.containerId);
      return {};
    },
    async listSandboxes() {
      return { sandboxes: m.sandboxes().map(toApiSandbox) };
    },
    async attach(req) {
      const e = await m.attach({
        containerId: req.containerId,
        network: req.network,
        containerName: req.containerName,
        aliases: req.aliases,
        ip: req.ipv4Address || undefined,
        ports: ports(req.ports),
        mac: req.macAddress || undefined,
        ifname: req.interfaceName || undefined,
      });
      const { networks, sandboxes } = maps();
      const endpoint = toApiEndpoint(e, networks, sandboxes);
      return req.names ? { ...endpoint, names: names(req.containerId, req.names) } : endpoint;
    },
    async detach(req) {
      await m.detach(req.containerId, req.network || undefined);
      return {};
    },
    async listEndpoints(req) {
      const { networks, sandboxes } = maps();
      return {
        endpoints: m
          .endpoints({ containerId: req.containerId, network: req.network })
          .map((e) => toApiEndpoint(e, networks, sandboxes)),
      };
    },
    async names(req) {
      return names(req.containerId, req);
    },
  };
  const gated = Object.fromEntries(
    Object.entries(handlers).map(([name, h]) => [
      name,
      async (req: unknown) => {
        await ready;
        return (h as (r: unknown) => unknown)(req);
      },
    ]),
  ) as Handlers<typeof NetworksService>;
  return implement(NetworksService, gated);
}
