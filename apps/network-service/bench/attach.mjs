#!/usr/bin/env node
/**
 * The attach benchmark (issue: Network service), run with `nx run network-service:bench`.
 *
 * One container's network lifecycle with one port map, in one run, interleaved,
 * BENCH_ROUNDS rounds of each:
 *   - ctr: CreateSandbox + Attach (veth on the bridge, address, route, port
 *     reservation, iptables) then RemoveSandbox, over gRPC against an isolated
 *     engine's network-service;
 *   - CNI: what a runtime does with Debian's containernetworking-plugins, as
 *     libcni chains them: `ip netns add`, bridge (host-local IPAM) ADD,
 *     portmap ADD with the bridge's result, then portmap DEL, bridge DEL,
 *     `ip netns del`.
 * Both make and remove a network namespace and end with the same kernel state.
 * Prints a markdown table of medians and ratios, and one JSON line.
 *
 * The CNI plugins make iptables chains of their own (CNI-HOSTPORT-*, and a
 * CNI-<hash> per container); the bench removes what it made that the
 * plugins' DEL leaves (their top chains, the bridge), and nothing else.
 */
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { NetworksService } from '@ctr/api/networks/v1/networks';
import { linkPrefix } from '@ctr/common/names';
import { freePort, TestEngine } from '@ctr/testkit';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 30);
const CNI_PATH = process.env.CNI_PATH ?? '/usr/lib/cni';
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

function cni(plugin, command, config, env) {
  return new Promise((resolve, reject) => {
    const p = spawn(join(CNI_PATH, plugin), [], {
      env: { PATH: process.env.PATH, CNI_COMMAND: command, CNI_PATH, CNI_IFNAME: 'eth0', ...env },
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    p.stdout.on('data', (d) => (out += d));
    p.stderr.on('data', (d) => (err += d));
    p.on('exit', (code) =>
      code === 0 ? resolve(out ? JSON.parse(out) : undefined) : reject(new Error(`${plugin} ${command}: ${out}${err}`)),
    );
    p.stdin.end(JSON.stringify(config));
  });
}

const ipCmd = (args) =>
  new Promise((resolve, reject) => {
    const p = spawn('ip', args, { stdio: 'ignore' });
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`ip ${args.join(' ')} exited ${code}`))));
  });

function cniChains() {
  return execFileSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.startsWith(':CNI-'))
    .map((l) => l.slice(1).split(' ')[0]);
}

async function main() {
  const engine = await TestEngine.start();
  const work = join(engine.dir, 'cni');
  mkdirSync(work, { recursive: true });
  const preexisting = new Set(cniChains());
  const bridge = `${linkPrefix(engine.instance)}cni`;
  const subnet = engine.userSubnet(15);
  const netConf = {
    cniVersion: '1.0.0',
    name: `ctrbench${engine.instance}`,
    type: 'bridge',
    bridge,
    isGateway: true,
    ipMasq: true,
    hairpinMode: true,
    ipam: { type: 'host-local', ranges: [[{ subnet }]], dataDir: join(work, 'ipam') },
  };
  const nets = engine.client(NetworksService, 'network-service');
  const times = { ctr: [], cni: [] };
  let cniNetns;
  try {
    for (let i = 0; i < ROUNDS + 1; i++) {
      const hostPort = await freePort();
      // ctr
      const id = `bench${i}`;
      let t0 = performance.now();
      await nets.createSandbox({ containerId: id, mode: 'bridge', containerName: id });
      await nets.attach({
        containerId: id,
        network: 'bridge',
        containerName: id,
        aliases: [],
        ipv4Address: '',
        ports: [{ protocol: 'tcp', containerPort: 80, hostPort, hostIp: '' }],
        macAddress: '',
        interfaceName: '',
      });
      await nets.removeSandbox({ containerId: id });
      const ctrMs = performance.now() - t0;

      // CNI
      const ns = `ctr-${engine.instance}-cni${i}`;
      const env = { CNI_CONTAINERID: `cni${i}${engine.instance}`, CNI_NETNS: `/run/netns/${ns}` };
      const portmap = {
        cniVersion: '1.0.0',
        name: netConf.name,
        type: 'portmap',
        capabilities: { portMappings: true },
        runtimeConfig: { portMappings: [{ hostPort, containerPort: 80, protocol: 'tcp' }] },
      };
      t0 = performance.now();
      cniNetns = ns;
      await ipCmd(['netns', 'add', ns]);
      const result = await cni('bridge', 'ADD', netConf, env);
      await cni('portmap', 'ADD', { ...portmap, prevResult: result }, env);
      await cni('portmap', 'DEL', { ...portmap, prevResult: result }, env);
      await cni('bridge', 'DEL', netConf, env);
      await ipCmd(['netns', 'del', ns]);
      cniNetns = undefined;
      const cniMs = performance.now() - t0;
      if (i > 0) {
        // Round 0 warms both up (page cache, first iptables table read).
        times.ctr.push(ctrMs);
        times.cni.push(cniMs);
      }
    }
  } catch (err) {
    console.error(`bench failed: ${err.message}`);
    process.exitCode = 1;
  } finally {
    if (cniNetns) await ipCmd(['netns', 'del', cniNetns]).catch(() => undefined);
    try {
      execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
    } catch {}
    const made = cniChains().filter((c) => !preexisting.has(c));
    if (made.length) {
      const save = execFileSync('iptables-save', ['-t', 'nat'], { encoding: 'utf8' }).split('\n');
      const lines = ['*nat'];
      for (const l of save) {
        if (l.startsWith('-A ') && made.some((c) => l.includes(`-j ${c}`) && !made.includes(l.split(' ')[1]))) {
          lines.push(l.replace(/^-A /, '-D '));
        }
      }
      for (const c of made) lines.push(`:${c} - [0:0]`);
      for (const c of made) lines.push(`-X ${c}`);
      lines.push('COMMIT', '');
      execFileSync('iptables-restore', ['-w', '--noflush'], { input: lines.join('\n') });
    }
    for (const c of await nets.listSandboxes({}).then((r) => r.sandboxes))
      await nets.removeSandbox({ containerId: c.containerId });
    await engine.stop();
    rmSync(work, { recursive: true, force: true });
  }

  if (process.exitCode) return;
  const ctr = median(times.ctr);
  const peer = median(times.cni);
  const table = [
    `attach + detach with one port map, ${ROUNDS} rounds interleaved, median`,
    '',
    '| | time | ratio |',
    '|---|---|---|',
    `| ctr network-service (gRPC CreateSandbox + Attach + RemoveSandbox) | ${ctr.toFixed(1)} ms | **${(ctr / peer).toFixed(2)}×** |`,
    `| CNI bridge + host-local + portmap (Debian's plugins, ip netns add/del) | ${peer.toFixed(1)} ms | 1.00× |`,
  ].join('\n');
  console.log(table);
  console.log(JSON.stringify({ bench: 'network-attach', rounds: ROUNDS, ctrMs: ctr, cniMs: peer, ratio: ctr / peer }));
}

await main();
