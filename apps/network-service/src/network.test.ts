/**
 * The network-service against the real kernel, through its API as ctrd runs
 * it: namespaces on a user network reaching each other by address and name,
 * port maps from the host, from containers and from a LAN machine (a test-made
 * namespace routed to the host), IPAM, bad input leaving nothing behind,
 * kill -9 in the middle of attaches, and the host's links and iptables
 * exactly as before once everything is removed.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Endpoint, NetworksService } from '@ctr/api/networks/v1/networks';
import { chainPrefix, linkPrefix } from '@ctr/common/names';
import type { ApiClient } from '@ctr/common/grpc';
import { LanHost, run, TestEngine, waitFor } from '@ctr/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let engine: TestEngine;
let nets: ApiClient<typeof NetworksService>;
let lan: LanHost;
let hostBefore: HostState;
const servers: ChildProcess[] = [];

interface HostState {
  links: string[];
  iptables: string;
}

/** The host's links and iptables rules, without counters and timestamps. */
async function hostState(): Promise<HostState> {
  const links = (await run('ip', ['-o', 'link', 'show'])).stdout
    .split('\n')
    .map((l) => l.split(': ')[1]?.split('@')[0])
    .filter(Boolean)
    .sort();
  const iptables = (await run('iptables-save', [])).stdout
    .split('\n')
    .filter((l) => !l.startsWith('#'))
    .map((l) => l.replace(/\[\d+:\d+\]/, ''))
    .join('\n');
  return { links, iptables };
}

const inNs = (netns: string, argv: string[], timeoutMs = 15_000) =>
  run('nsenter', [`--net=${netns}`, ...argv], { timeoutMs });

const CURL = ['curl', '-s', '--max-time', '3'];
const fetchText = (netns: string | undefined, url: string) =>
  netns ? inNs(netns, [...CURL, url]) : run(CURL[0], [...CURL.slice(1), url], { timeoutMs: 15_000 });

/** A busybox httpd inside a namespace, answering `body` on `port`. */
async function httpd(netns: string, port: number, body: string): Promise<void> {
  const dir = join(engine.dir, `www-${port}-${body}`);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'index.html'), body);
  const child = spawn('nsenter', [`--net=${netns}`, 'busybox', 'httpd', '-f', '-p', String(port), '-h', dir], {
    stdio: 'ignore',
  });
  servers.push(child);
  await waitFor(async () => (await fetchText(netns, `http://127.0.0.1:${port}/`)).stdout === body, `httpd on ${port}`);
}

/** A Names request that asks for nothing beyond the defaults. */
const noNames = (containerId: string) => ({
  containerId,
  hostname: '',
  domainname: '',
  dns: [],
  dnsSearch: [],
  dnsOptions: [],
  extraHosts: [],
});

async function sandbox(id: string, mode = 'bridge', name = id) {
  return nets.createSandbox({ containerId: id, mode, containerName: name });
}

function attach(containerId: string, network: string, extra: Partial<Parameters<typeof nets.attach>[0]> = {}) {
  return nets.attach({
    containerId,
    network,
    containerName: containerId,
    aliases: [],
    ipv4Address: '',
    ports: [],
    macAddress: '',
    interfaceName: '',
    ...extra,
  });
}

async function ourLinks(): Promise<string[]> {
  return (await hostState()).links.filter((l) => l.startsWith(linkPrefix(engine.instance)));
}

async function removeAllSandboxes(): Promise<void> {
  for (const s of (await nets.listSandboxes({})).sandboxes) await nets.removeSandbox({ containerId: s.containerId });
}

beforeAll(async () => {
  hostBefore = await hostState();
  engine = await TestEngine.start();
  nets = engine.client(NetworksService, 'network-service');
  lan = await LanHost.create(engine.instance);
});

afterAll(async () => {
  for (const s of servers) s.kill('SIGKILL');
  await lan?.close();
  if (nets) await removeAllSandboxes().catch(() => undefined);
  await engine?.stop();
});

describe('network-service', () => {
  it('lists the predefined networks, and the default bridge exists with its subnet', async () => {
    const { networks } = await nets.list({ filters: [] });
    expect(networks.map((n) => [n.name, n.driver])).toEqual([
      ['bridge', 'bridge'],
      ['host', 'host'],
      ['none', 'null'],
    ]);
    const bridge = networks[0];
    expect(bridge.ipam[0].subnet).toBe(engine.subnets.default);
    const addr = (await run('ip', ['-o', '-4', 'addr', 'show', 'dev', bridge.bridge])).stdout;
    expect(addr).toContain(`${bridge.ipam[0].gateway}/24`);
  });

  it('two namespaces on a user network reach each other by address and by name, and see names come and go', async () => {
    const subnet = engine.userSubnet(0);
    const net = await nets.create({
      name: 'app',
      driver: 'bridge',
      ipam: [{ subnet, gateway: '', ipRange: '' }],
      labels: {},
      options: {},
      internal: false,
    });
    expect(net.ipam[0].gateway).toBe(subnet.replace('.0/24', '.1'));
    const a = await sandbox('alpha', 'app');
    const b = await sandbox('beta', 'app');
    const ea = await attach('alpha', 'app', { aliases: ['db'] });
    // The name files asked for with the attach: what Names answers after it.
    const eb = await attach('beta', 'app', { names: noNames('beta') });
    expect(ea.ipv4Address).not.toBe(eb.ipv4Address);
    expect(ea.interfaceName).toBe('eth0');

    const ping = await inNs(b.netnsPath, ['busybox', 'ping', '-c', '1', '-W', '2', ea.ipv4Address]);
    expect(ping.code, ping.stderr).toBe(0);

    const names = await nets.names(noNames('beta'));
    expect(names.resolvConf).toContain(`nameserver ${net.ipam[0].gateway}`);
    expect(names.hosts).toContain(`${eb.ipv4Address}\tbeta`);
    expect(eb.names).toEqual(names);
    // busybox is static: its resolver reads the resolv.conf we bind over the host's, in a mount namespace of its own.
    const resolv = join(engine.dir, 'beta-resolv.conf');
    writeFileSync(resolv, names.resolvConf);
    const byName = (name: string) =>
      inNs(b.netnsPath, [
        'unshare',
        '--mount',
        'sh',
        '-c',
        `mount --bind ${resolv} /etc/resolv.conf && busybox ping -c 1 -W 2 ${name}`,
      ]);
    for (const name of ['alpha', 'db', 'ALPHA']) {
      const r = await byName(name);
      expect(r.code, `${name}: ${r.stdout}${r.stderr}`).toBe(0);
      expect(r.stdout).toContain(ea.ipv4Address);
    }

    await nets.detach({ containerId: 'alpha', network: 'app' });
    expect((await byName('alpha')).code).not.toBe(0);
    await sandbox('gamma', 'app');
    const eg = await attach('gamma', 'app');
    const r = await byName('gamma');
    expect(r.stdout).toContain(eg.ipv4Address);
    for (const id of ['alpha', 'beta', 'gamma']) await nets.removeSandbox({ containerId: id });
    await nets.remove({ ref: 'app' });
    expect(readdirSync(join(engine.state, 'netns'))).toEqual([]);
    expect(a.netnsPath).toBe(join(engine.state, 'netns', 'alpha'));
  });

  it('publishes ports: 127.0.0.1 and the host address from the host, other containers, and a LAN machine only where it should', async () => {
    const web = await sandbox('web');
    const ep = await attach('web', 'bridge', {
      ports: [
        { protocol: 'tcp', containerPort: 80, hostPort: 0, hostIp: '' },
        { protocol: 'tcp', containerPort: 81, hostPort: 0, hostIp: '127.0.0.1' },
      ],
    });
    const [all, local] = ep.ports;
    expect(all.hostPort).toBeGreaterThan(0);
    expect(local.hostPort).toBeGreaterThan(0);
    await httpd(web.netnsPath, 80, 'public');
    await httpd(web.netnsPath, 81, 'private');

    // From the host: loopback and the host's own address.
    expect((await fetchText(undefined, `http://127.0.0.1:${all.hostPort}/`)).stdout).toBe('public');
    expect((await fetchText(undefined, `http://127.0.0.1:${local.hostPort}/`)).stdout).toBe('private');
    expect((await fetchText(undefined, `http://${lan.hostIp}:${all.hostPort}/`)).stdout).toBe('public');

    // From another container: through the gateway's published port (hairpin), and straight to its address.
    const other = await sandbox('client');
    const eo = await attach('client', 'bridge');
    expect((await fetchText(other.netnsPath, `http://${eo.gateway}:${all.hostPort}/`)).stdout).toBe('public');
    expect((await fetchText(other.netnsPath, `http://${ep.ipv4Address}:80/`)).stdout).toBe('public');
    // And itself through its own published port.
    expect((await fetchText(web.netnsPath, `http://${ep.gateway}:${all.hostPort}/`)).stdout).toBe('public');

    // The LAN machine reaches 0.0.0.0 but not 127.0.0.1...
    const fromLan = (url: string) => lan.exec([...CURL, url]);
    expect((await fromLan(`http://${lan.hostIp}:${all.hostPort}/`)).stdout).toBe('public');
    expect((await fromLan(`http://${lan.hostIp}:${local.hostPort}/`)).code).not.toBe(0);
    // ...even when it routes 127.0.0.1 to the host (docker's leak). The packets do arrive: our PREROUTING jump
    // counts them, and nothing there DNATs a loopback address.
    await lan.mustExec(['sysctl', '-qw', 'net.ipv4.conf.eth0.route_localnet=1']);
    await lan.mustExec(['ip', 'route', 'del', 'local', '127.0.0.0/8', 'dev', 'lo', 'table', 'local']);
    await lan.mustExec(['ip', 'route', 'del', 'local', '127.0.0.1', 'dev', 'lo', 'table', 'local']);
    await lan.mustExec(['ip', 'route', 'add', '127.0.0.1/32', 'via', lan.hostIp, 'dev', 'eth0']);
    const arrived = async () => {
      const rules = (await run('iptables', ['-t', 'nat', '-v', '-x', '-n', '-L', 'PREROUTING'])).stdout;
      const line = rules.split('\n').find((l) => l.includes(`${chainPrefix(engine.instance)}-DNAT`)) ?? '';
      return Number(line.trim().split(/\s+/)[0]);
    };
    const before = await arrived();
    expect((await fromLan(`http://127.0.0.1:${local.hostPort}/`)).code).not.toBe(0);
    expect(await arrived()).toBeGreaterThan(before);
    // Nor the container's address, routed through the host.
    await lan.mustExec(['ip', 'route', 'add', engine.subnets.default, 'via', lan.hostIp]);
    expect((await fromLan(`http://${ep.ipv4Address}:80/`)).code).not.toBe(0);

    // A host port already in use is refused, and the failed attach leaves nothing.
    const links = await ourLinks();
    await sandbox('clash');
    await expect(
      attach('clash', 'bridge', {
        ports: [{ protocol: 'tcp', containerPort: 80, hostPort: all.hostPort, hostIp: '' }],
      }),
    ).rejects.toThrow(`Bind for 0.0.0.0:${all.hostPort} failed: port is already allocated`);
    expect(await ourLinks()).toEqual(links);
    expect((await nets.listEndpoints({ containerId: 'clash', network: '' })).endpoints).toEqual([]);

    // Rules carry their owner, and go with the endpoint.
    const dnat = `${chainPrefix(engine.instance)}-DNAT`;
    const rules = (await run('iptables', ['-t', 'nat', '-S', dnat])).stdout;
    expect(rules).toContain(`--dport ${all.hostPort}`);
    expect(rules).toContain(`ctr:${engine.instance} endpoint ${ep.id.slice(0, 12)}`);
    await nets.removeSandbox({ containerId: 'web' });
    expect((await run('iptables', ['-t', 'nat', '-S', dnat])).stdout).not.toContain(`--dport ${all.hostPort}`);
    for (const id of ['client', 'clash']) await nets.removeSandbox({ containerId: id });
  });

  it('IPAM: the gateway is reserved, the next address follows the last, a static address conflicts clearly', async () => {
    const subnet = engine.userSubnet(1);
    await nets.create({
      name: 'ipam',
      driver: '',
      ipam: [{ subnet, gateway: '', ipRange: '' }],
      labels: {},
      options: {},
      internal: false,
    });
    const prefix = subnet.replace('.0/24', '');
    for (const id of ['i1', 'i2', 'i3']) await sandbox(id, 'ipam');
    expect((await attach('i1', 'ipam')).ipv4Address).toBe(`${prefix}.2`);
    expect((await attach('i2', 'ipam')).ipv4Address).toBe(`${prefix}.3`);
    // Idempotent: attaching again returns the same endpoint.
    expect((await attach('i2', 'ipam')).ipv4Address).toBe(`${prefix}.3`);
    await nets.detach({ containerId: 'i1', network: 'ipam' });
    expect((await attach('i3', 'ipam')).ipv4Address).toBe(`${prefix}.4`);
    await expect(attach('i1', 'ipam', { ipv4Address: `${prefix}.3` })).rejects.toThrow('Address already in use');
    await expect(attach('i1', 'ipam', { ipv4Address: `${prefix}.1` })).rejects.toThrow('Address already in use');
    await expect(attach('i1', 'ipam', { ipv4Address: '100.64.0.9' })).rejects.toThrow("not in the network's subnet");
    expect((await attach('i1', 'ipam', { ipv4Address: `${prefix}.200` })).ipv4Address).toBe(`${prefix}.200`);
    await expect(nets.remove({ ref: 'ipam' })).rejects.toThrow('has active endpoints');
    for (const id of ['i1', 'i2', 'i3']) await nets.removeSandbox({ containerId: id });
    await nets.remove({ ref: 'ipam' });
  });

  it('refuses bad networks with one clear error each', async () => {
    const create = (name: string, subnet: string, extra: { gateway?: string; driver?: string } = {}) =>
      nets.create({
        name,
        driver: extra.driver ?? '',
        ipam: subnet ? [{ subnet, gateway: extra.gateway ?? '', ipRange: '' }] : [],
        labels: {},
        options: {},
        internal: false,
      });
    await expect(create('bad', '100.64.0.0/33')).rejects.toThrow('invalid subnet');
    await expect(create('bad', '100.64.0.1/24')).rejects.toThrow('it should be 100.64.0.0/24');
    await expect(create('bad', engine.subnets.default)).rejects.toThrow('Pool overlaps');
    // The host's own networks too: the LAN machine's link is one.
    await expect(create('bad', `${lan.hostIp.replace(/\.\d+$/, '.0')}/24`)).rejects.toThrow(
      `overlaps the host's ${lan.hostIp}/30 on ${lan.hostLink}`,
    );
    await expect(create('bad', engine.userSubnet(2), { gateway: '100.64.0.1' })).rejects.toThrow('invalid gateway');
    await expect(create('bad', '', { driver: 'macvlan' })).rejects.toThrow('not supported');
    await expect(create('bad name', engine.userSubnet(2))).rejects.toThrow('invalid network name');
    await expect(create('host', engine.userSubnet(2))).rejects.toThrow('already exists');
    await expect(nets.remove({ ref: 'bridge' })).rejects.toThrow('pre-defined network');
    await expect(nets.remove({ ref: 'nope' })).rejects.toThrow('network nope not found');
    // Without --subnet, a free block of the pool.
    const auto = await create('auto', '');
    expect(auto.ipam[0].subnet).toMatch(/^100\.(8\d|9[0-5])\./);
    expect((await nets.prune({ filters: [] })).removed).toEqual(['auto']);
    expect((await nets.list({ filters: [] })).networks.map((n) => n.name)).toEqual(['bridge', 'host', 'none']);
  });

  it('host, none and container: modes', async () => {
    const none = await nets.createSandbox({
      containerId: 'n1',
      mode: 'none',
      containerName: 'n1',
      names: { ...noNames('n1'), hostname: 'lonely' },
    });
    // The name files asked for with the sandbox: no address of its own in hosts.
    expect(none.names?.hostname).toBe('lonely\n');
    expect(none.names?.hosts).toContain('127.0.0.1\tlocalhost');
    expect(none.names?.hosts).not.toContain('lonely');
    const links = (await inNs(none.netnsPath, ['ip', '-o', 'link'])).stdout;
    expect(links).toContain('lo:');
    expect(links).not.toContain('eth0');
    await expect(attach('n1', 'bridge')).rejects.toThrow('network mode none');
    const host = await sandbox('h1', 'host');
    expect(host.netnsPath).toBe('');
    await sandbox('b1');
    const e = await attach('b1', 'bridge');
    const joined = await sandbox('j1', 'container:b1');
    expect(joined.netnsPath).toBe(join(engine.state, 'netns', 'b1'));
    const names = await nets.names({
      containerId: 'j1',
      hostname: 'joined',
      domainname: '',
      dns: ['100.64.53.53'],
      dnsSearch: [],
      dnsOptions: [],
      extraHosts: [{ hostname: 'gw', ip: 'host-gateway' }],
    });
    expect(names.resolvConf).toBe('nameserver 100.64.53.53\n');
    expect(names.hosts).toContain(`${e.ipv4Address}\tjoined`);
    expect(names.hosts).toContain(`${e.gateway}\tgw`);
    expect(names.hostname).toBe('joined\n');
    for (const id of ['j1', 'b1', 'h1', 'n1']) await nets.removeSandbox({ containerId: id });
  });

  it('30 attaches in parallel get 30 distinct addresses, and go without a trace', async () => {
    const ids = Array.from({ length: 30 }, (_, i) => `par${i}`);
    await Promise.all(ids.map((id) => sandbox(id)));
    const eps = await Promise.all(
      ids.map((id) =>
        attach(id, 'bridge', { ports: [{ protocol: 'tcp', containerPort: 80, hostPort: 0, hostIp: '127.0.0.1' }] }),
      ),
    );
    expect(new Set(eps.map((e) => e.ipv4Address)).size).toBe(30);
    expect(new Set(eps.map((e) => e.ports[0].hostPort)).size).toBe(30);
    expect((await ourLinks()).filter((l) => l.includes(`${linkPrefix(engine.instance)}v`))).toHaveLength(30);
    await Promise.all(ids.map((id) => nets.removeSandbox({ containerId: id })));
    // The veths go in the background, within moments.
    await waitFor(
      async () => (await ourLinks()).filter((l) => l.includes(`${linkPrefix(engine.instance)}v`)).length === 0,
      'the veths to go',
    );
    expect(
      (await run('iptables', ['-t', 'nat', '-S', `${chainPrefix(engine.instance)}-DNATL`])).stdout.trim().split('\n'),
    ).toHaveLength(1);
  });

  it('kill -9 in the middle of attaches: after the restart and reconcile nothing leaks, and retries succeed', async () => {
    // Ten clients, each attaching four containers one after another and retrying until it gets an answer,
    // as container-service does; the service is killed once ten attaches are done, so each client has one in flight.
    const ids = Array.from({ length: 40 }, (_, i) => `k${i}`);
    let retried = 0;
    let done = 0;
    let reachedTen: () => void = () => undefined;
    const tenDone = new Promise<void>((r) => {
      reachedTen = r;
    });
    const attachRetrying = async (id: string): Promise<Endpoint> => {
      for (;;) {
        try {
          await sandbox(id);
          return await attach(id, 'bridge', {
            ports: [{ protocol: 'tcp', containerPort: 80, hostPort: 0, hostIp: '' }],
          });
        } catch (err) {
          if (!/UNAVAILABLE|CANCELLED|ECONNRESET|socket/i.test(String(err))) throw err;
          retried++;
        }
      }
    };
    const clients = Array.from({ length: 10 }, async (_, c) => {
      const mine: Endpoint[] = [];
      for (let k = 0; k < 4; k++) {
        mine.push(await attachRetrying(ids[c * 4 + k]));
        if (++done === 10) reachedTen();
      }
      return mine;
    });
    await tenDone;
    await engine.crashService('network-service');
    const eps = (await Promise.all(clients)).flat();
    // The kill did land in the middle: some calls were cut off and retried.
    expect(retried).toBeGreaterThan(0);
    expect(new Set(eps.map((e) => e.ipv4Address)).size).toBe(40);

    // The database, the kernel and the rules agree: one veth, one namespace, one DNAT rule per endpoint.
    const listed = (await nets.listEndpoints({ containerId: '', network: '' })).endpoints;
    expect(listed.map((e) => e.containerId).sort()).toEqual([...ids].sort());
    expect((await ourLinks()).filter((l) => l.includes(`${linkPrefix(engine.instance)}v`)).sort()).toEqual(
      listed.map((e) => e.hostInterface).sort(),
    );
    expect(readdirSync(join(engine.state, 'netns')).sort()).toEqual([...ids].sort());
    const dnat = (await run('iptables', ['-t', 'nat', '-S', `${chainPrefix(engine.instance)}-DNAT`])).stdout;
    expect(dnat.split('\n').filter((l) => l.includes('--to-destination'))).toHaveLength(40);
    for (const e of listed) expect(dnat).toContain(`--to-destination ${e.ipv4Address}:80`);

    await Promise.all(ids.map((id) => nets.removeSandbox({ containerId: id })));
    // The veths go in the background, within moments.
    await waitFor(
      async () => (await ourLinks()).filter((l) => l.includes(`${linkPrefix(engine.instance)}v`)).length === 0,
      'the veths to go',
    );
  });

  it('re-asserts its rules from the database when it restarts', async () => {
    const s = await sandbox('keep');
    const ep = await attach('keep', 'bridge', {
      ports: [{ protocol: 'tcp', containerPort: 80, hostPort: 0, hostIp: '127.0.0.1' }],
    });
    await httpd(s.netnsPath, 80, 'kept');
    const url = `http://127.0.0.1:${ep.ports[0].hostPort}/`;
    expect((await fetchText(undefined, url)).stdout).toBe('kept');
    // Someone empties our chain; a restart puts the rule back, and the endpoint kept working throughout.
    await run('iptables', ['-t', 'nat', '-F', `${chainPrefix(engine.instance)}-DNATL`]);
    expect((await fetchText(undefined, url)).code).not.toBe(0);
    await engine.crashService('network-service');
    expect((await fetchText(undefined, url)).stdout).toBe('kept');
    expect((await nets.listEndpoints({ containerId: 'keep', network: '' })).endpoints[0].ipv4Address).toBe(
      ep.ipv4Address,
    );
    // Its port is still reserved after the restart.
    await sandbox('taker');
    await expect(
      attach('taker', 'bridge', {
        ports: [{ protocol: 'tcp', containerPort: 80, hostPort: ep.ports[0].hostPort, hostIp: '127.0.0.1' }],
      }),
    ).rejects.toThrow('port is already allocated');
    for (const id of ['keep', 'taker']) await nets.removeSandbox({ containerId: id });
  });

  it('leaves the host exactly as it found it once everything is removed and the engine stops', async () => {
    for (const n of (await nets.list({ filters: [] })).networks) {
      if (!['bridge', 'host', 'none'].includes(n.name)) await nets.remove({ ref: n.id });
    }
    await removeAllSandboxes();
    await lan.close();
    for (const s of servers) s.kill('SIGKILL');
    await engine.stop();
    const after = await hostState();
    expect(after.links).toEqual(hostBefore.links);
    expect(after.iptables).toEqual(hostBefore.iptables);
    // stop() is idempotent for the afterAll.
    nets = undefined as unknown as typeof nets;
    engine = undefined as unknown as TestEngine;
  });
});
