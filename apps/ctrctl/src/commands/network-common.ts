/** Shared by the network commands: docker's shapes of a network. */
import type { Network } from '@ctr/api/networks/v1/networks';

export const shortId = (id: string) => id.slice(0, 12);

/** `network inspect`'s object, as docker prints it. */
export function inspectNetwork(n: Network) {
  const containers: Record<string, unknown> = {};
  for (const e of n.endpoints) {
    containers[e.containerId] = {
      Name: e.containerName,
      EndpointID: e.id,
      MacAddress: e.macAddress,
      IPv4Address: `${e.ipv4Address}/${e.prefixLength}`,
      IPv6Address: '',
    };
  }
  return {
    Name: n.name,
    Id: n.id,
    Created: n.createdAt?.toISOString() ?? '',
    Scope: 'local',
    Driver: n.driver,
    EnableIPv4: true,
    EnableIPv6: false,
    IPAM: {
      Driver: 'default',
      Options: {},
      Config: n.ipam.map((c) => ({
        Subnet: c.subnet,
        Gateway: c.gateway,
        ...(c.ipRange ? { IPRange: c.ipRange } : {}),
      })),
    },
    Internal: n.internal,
    Attachable: false,
    Ingress: false,
    ConfigFrom: { Network: '' },
    ConfigOnly: false,
    Containers: containers,
    Options: {
      ...(n.bridge ? { 'com.docker.network.bridge.name': n.bridge } : {}),
      ...(n.mtu ? { 'com.docker.network.driver.mtu': String(n.mtu) } : {}),
      ...n.options,
    },
    Labels: n.labels,
  };
}

export function networkRow(n: Network, noTrunc = false) {
  return {
    CreatedAt: n.createdAt?.toISOString() ?? '',
    Driver: n.driver,
    ID: noTrunc ? n.id : shortId(n.id),
    IPv4: 'true',
    IPv6: 'false',
    Internal: String(n.internal),
    Labels: Object.entries(n.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(','),
    Name: n.name,
    Scope: 'local',
  };
}

/** `KEY=VALUE` pairs of repeated flags (--label, --opt). */
export function pairs(list: string[], flag: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list) {
    const eq = item.indexOf('=');
    if (eq === 0) throw new Error(`invalid ${flag} ${JSON.stringify(item)}: expected KEY=VALUE`);
    if (eq < 0) out[item] = '';
    else out[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return out;
}
