/**
 * The network commands through ctrctl, as a docker user types them, against
 * an isolated engine. The container side of connect/disconnect is a sandbox
 * made through the network API, as container-service makes one for `run`.
 */
import { NetworksService } from '@ctr/api/networks/v1/networks';
import { TestEngine } from '@ctr/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let engine: TestEngine;

beforeAll(async () => {
  engine = await TestEngine.start();
});

afterAll(async () => {
  if (engine) {
    const nets = engine.client(NetworksService, 'network-service');
    for (const s of (await nets.listSandboxes({})).sandboxes) await nets.removeSandbox({ containerId: s.containerId });
  }
  await engine?.stop();
});

const ctrctl = (args: string[], input?: string) => engine.ctrctl(args, { input });

describe('ctrctl network commands', () => {
  it('ls shows the predefined networks with docker columns; -q and json too', async () => {
    const r = await ctrctl(['network', 'ls']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^NETWORK ID\s+NAME\s+DRIVER\s+SCOPE$/);
    expect(lines.slice(1).map((l) => l.split(/\s+/).slice(1))).toEqual([
      ['bridge', 'bridge', 'local'],
      ['host', 'host', 'local'],
      ['none', 'null', 'local'],
    ]);
    const ids = (await ctrctl(['network', 'ls', '-q'])).stdout.trim().split('\n');
    expect(ids.every((id) => /^[0-9a-f]{12}$/.test(id))).toBe(true);
    const json = (await ctrctl(['network', 'ls', '--format', 'json', '--filter', 'driver=bridge'])).stdout
      .trim()
      .split('\n');
    expect(json.map((l) => JSON.parse(l).Name)).toEqual(['bridge']);
  });

  it('create, inspect, connect, disconnect, rm', async () => {
    const subnet = engine.userSubnet(0);
    const created = await ctrctl(['network', 'create', '--subnet', subnet, '--label', 'team=web', 'app']);
    expect(created.code, created.stderr).toBe(0);
    expect(created.stdout).toMatch(/^[0-9a-f]{64}\n$/);
    const again = await ctrctl(['network', 'create', 'app']);
    expect([again.code, again.stderr]).toEqual([1, 'Error: network with name app already exists\n']);

    const inspect = JSON.parse((await ctrctl(['network', 'inspect', 'app'])).stdout);
    expect(inspect).toHaveLength(1);
    expect(inspect[0]).toMatchObject({
      Name: 'app',
      Id: created.stdout.trim(),
      Driver: 'bridge',
      Scope: 'local',
      Internal: false,
      IPAM: { Driver: 'default', Config: [{ Subnet: subnet, Gateway: subnet.replace('.0/24', '.1') }] },
      Labels: { team: 'web' },
      Containers: {},
    });
    expect((await ctrctl(['network', 'inspect', '-f', '{{.Driver}}', 'app'])).stdout).toBe('bridge\n');
    expect((await ctrctl(['network', 'ls', '--filter', 'label=team=web', '--format', '{{.Name}}'])).stdout).toBe(
      'app\n',
    );

    const id = 'c'.repeat(64);
    await engine
      .client(NetworksService, 'network-service')
      .createSandbox({ containerId: id, mode: 'bridge', containerName: 'web' });
    const connect = await ctrctl(['network', 'connect', '--alias', 'www', 'app', 'web']);
    expect(connect.code, connect.stderr).toBe(0);
    const containers = JSON.parse((await ctrctl(['network', 'inspect', 'app'])).stdout)[0].Containers;
    expect(containers[id]).toMatchObject({ Name: 'web', IPv4Address: `${subnet.replace('.0/24', '.2')}/24` });

    const busy = await ctrctl(['network', 'rm', 'app']);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toContain('has active endpoints');
    expect((await ctrctl(['network', 'disconnect', 'app', 'web'])).code).toBe(0);
    const twice = await ctrctl(['network', 'disconnect', 'app', 'web']);
    expect([twice.code, twice.stderr]).toEqual([1, `Error: container ${id} is not connected to network app\n`]);
    const unknown = await ctrctl(['network', 'connect', 'app', 'nosuch']);
    expect([unknown.code, unknown.stderr]).toEqual([1, 'Error: No such container: nosuch\n']);

    expect(await ctrctl(['network', 'rm', 'app', 'nope'])).toMatchObject({
      code: 1,
      stdout: 'app\n',
      stderr: 'Error: network nope not found\n',
    });
    expect((await ctrctl(['network', 'rm', 'bridge'])).stderr).toBe(
      'Error: bridge is a pre-defined network and cannot be removed\n',
    );
  });

  it('refuses bad input with one line, and prune removes unused networks', async () => {
    const bad = await ctrctl(['network', 'create', '--subnet', '999.1.1.0/24', 'x']);
    expect([bad.code, bad.stderr]).toEqual([1, 'Error: invalid subnet: "999.1.1.0"\n']);
    const overlap = await ctrctl(['network', 'create', '--subnet', engine.subnets.default, 'x']);
    expect(overlap.code).toBe(1);
    expect(overlap.stderr).toMatch(/^Error: invalid pool request: Pool overlaps/);
    expect((await ctrctl(['network', 'create', '--gateway', '100.64.0.1', 'x'])).code).toBe(125);
    expect((await ctrctl(['network', 'ls', '-q'])).stdout.trim().split('\n')).toHaveLength(3);

    for (const n of ['one', 'two']) expect((await ctrctl(['network', 'create', n])).code).toBe(0);
    const pruned = await ctrctl(['network', 'prune', '-f']);
    expect(pruned.stdout).toBe('Deleted Networks:\none\ntwo\n\n');
    expect((await ctrctl(['network', 'ls', '--format', '{{.Name}}'])).stdout).toBe('bridge\nhost\nnone\n');
  });
});
