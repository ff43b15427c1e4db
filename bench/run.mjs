#!/usr/bin/env node
/**
 * `nx run bench:run`: ctr beside its peers on this machine, in one run.
 *
 *   - `run --rm busybox true` wall time: `ctrctl run --rm` (default bridge,
 *     and --network none) beside containerd 1.6's `ctr run --rm` (runc),
 *     interleaved rounds, medians; Node's own start for reference. Each
 *     command starts 300 ms after the one before, on a quiet machine.
 *   - 20 detached containers started one after another (`run -d ... sleep`):
 *     the time for all 20 (default bridge, and --network none, as containerd's
 *     `ctr run -d` has none), and memory per container as the PSS of its shim
 *     (containerd-shim-runc-v2 for containerd); ours with the share of the
 *     zygote they are forked from counted in as well, and in the ratio.
 *   - pull + unpack of a multi-layer Debian image from a local registry
 *     (apps/image-service/bench/pull.mjs) and network attach with a port map
 *     beside the CNI plugins (apps/network-service/bench/attach.mjs), run as
 *     they are and read from their JSON line.
 *
 * podman + crun are not installed on this machine (and Debian's crun refuses
 * its hybrid cgroup layout), so they have no column. containerd comes from
 * Debian's package, fetched into .bench/ and never installed. Prints a
 * markdown table, writes it to bench/results.md and into the README between
 * its bench markers. Figures, not assertions: it exits 0 unless a step fails.
 */
import { readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  buildBusyboxImage,
  containerdBinaries,
  median,
  pushLayout,
  startContainerd,
  TestEngine,
  TestRegistry,
  timedRun,
} from '@ctr/testkit';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15);
const DETACHED = 20;
const PULL_ROUNDS = 9;
/** The pause before each timed `run --rm`. */
const QUIET_MS = 300;
/** Containers to a shim in the grouped run. */
const GROUP = 10;
const extraNotes = [];
const root = process.cwd();
const work = process.env.BENCH_DIR ?? `/var/tmp/ctr-bench-${process.pid}`;
const CTRCTL = join(root, 'apps/ctrctl/dist/bundle/main.cjs');

/** rmdir that leaves a directory in use (or not there) alone. */
function rmdirQuiet(dir) {
  try {
    rmdirSync(dir);
  } catch {
    // not empty, or not there
  }
}

const exec = async (cmd, args, env = process.env) => {
  const { ms, stdout } = await timedRun(cmd, args, { env });
  return { ms, out: stdout };
};

async function pssKb(pid) {
  const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
  return Number(text.match(/^Pss:\s+(\d+) kB/m)?.[1] ?? 0);
}

/** Processes whose command line has every one of `parts`. */
async function pidsWith(...parts) {
  const out = [];
  for (const p of await readdir('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    const cmd = (await readFile(`/proc/${p}/cmdline`, 'utf8').catch(() => '')).split('\0').join(' ');
    if (parts.every((x) => cmd.includes(x))) out.push(Number(p));
  }
  return out;
}

/** A sub-bench's figures: the last JSON line it printed. */
async function subBench(script, rounds) {
  const { out } = await exec(process.execPath, [join(root, script)], { ...process.env, BENCH_ROUNDS: String(rounds) });
  const line = out
    .trim()
    .split('\n')
    .reverse()
    .find((l) => l.startsWith('{'));
  return JSON.parse(line);
}

/**
 * DETACHED `run -d ... sleep` one after another on `engine`: the time for all,
 * and memory per container as the PSS of the shims they run in over their
 * number (a group's shim counted once); the containers are removed after.
 */
async function detached(engine, image, flags = []) {
  const ctrctl = (...args) => exec(process.execPath, [CTRCTL, ...args], engine.env);
  await ctrctl('pull', '-q', image);
  const ids = [];
  const t0 = performance.now();
  for (let i = 0; i < DETACHED; i++) ids.push((await ctrctl('run', '-d', ...flags, image, 'sleep', '1000')).out.trim());
  const ms = performance.now() - t0;
  await new Promise((r) => setTimeout(r, 1000));
  const pids = new Set(
    await Promise.all(
      ids.map(async (id) => Number(await readFile(join(engine.state, 'shims', id, 'shim.pid'), 'utf8'))),
    ),
  );
  const pss = (await Promise.all([...pids].map(pssKb))).reduce((a, b) => a + b, 0) / DETACHED / 1024;
  // Forked shims share pages with their zygote, which PSS splits among them all: its part counted too.
  const zygote = await zygotePss(engine);
  for (const id of ids) await ctrctl('rm', '-f', id);
  return { ms, pss, shims: pids.size, withZygote: pss + zygote / DETACHED, zygote };
}

/** The PSS of container-service's warm shim, in MB. */
async function warmShimPss(engine) {
  const dir = join(engine.state, 'shims');
  const warm = (await readdir(dir)).find((n) => n.startsWith('warm-'));
  if (!warm) return 0;
  return (await pssKb(Number(await readFile(join(dir, warm, 'shim.pid'), 'utf8')))) / 1024;
}

/** The PSS of the shim zygote that container-service forks its shims from, in MB (0: none). */
async function zygotePss(engine) {
  const [pid] = await pidsWith('--zygote', `--root ${engine.root} `);
  return pid ? (await pssKb(pid)) / 1024 : 0;
}

async function main() {
  rmSync(work, { recursive: true, force: true });
  const bin = containerdBinaries(join(root, '.bench/peers'));
  const registry = await TestRegistry.start();
  const engine = await TestEngine.start();
  let containerd;
  let groupEngine;
  const rows = [];
  const t = { bridge: [], none: [], containerd: [], node: [] };
  try {
    containerd = await startContainerd(bin, join(work, 'containerd'));
    groupEngine = await TestEngine.start({ config: { shim: { group: GROUP } } });
    const layout = await buildBusyboxImage(join(work, 'img'), '1');
    const image = `${registry.host}/busybox:1`;
    await pushLayout(layout.dir, '1', image);
    const ctrctl = (...args) => exec(process.execPath, [CTRCTL, ...args], engine.env);
    const ctr = (...args) =>
      exec(join(bin, 'ctr'), ['--address', containerd.address, '--namespace', 'bench', ...args], {
        ...process.env,
        PATH: `${bin}:${process.env.PATH}`,
      });
    await ctrctl('pull', '-q', image);
    await ctr('images', 'pull', '--plain-http', image);

    // 1. run --rm true, each on a quiet machine: what one side leaves running in the background
    //    (containerd's deferred GC and shim exit, ctr's refill of its warm shim) does not land in
    //    the other's timing.
    const quiet = async (f) => {
      await new Promise((r) => setTimeout(r, QUIET_MS));
      return (await f()).ms;
    };
    for (let i = 0; i < ROUNDS + 1; i++) {
      const r = {
        bridge: await quiet(() => ctrctl('run', '--rm', image, 'true')),
        none: await quiet(() => ctrctl('run', '--rm', '--network', 'none', image, 'true')),
        containerd: await quiet(() => ctr('run', '--rm', image, `rm-${i}`, 'true')),
        node: await quiet(() => exec(process.execPath, ['-e', '0'])),
      };
      if (i === 0) continue; // warm-up
      for (const k of Object.keys(t)) t[k].push(r[k]);
      process.stderr.write(
        `run --rm round ${i}/${ROUNDS}: ${JSON.stringify(r, (_, v) => (typeof v === 'number' ? Math.round(v) : v))}\n`,
      );
    }
    const base = median(t.containerd);
    rows.push([
      '`run --rm busybox true`',
      `${median(t.bridge).toFixed(0)} ms (bridge), ${median(t.none).toFixed(0)} ms (--network none)`,
      `${base.toFixed(0)} ms (\`ctr run --rm\`, no network)`,
      `${(median(t.bridge) / base).toFixed(2)}× / ${(median(t.none) / base).toFixed(2)}×`,
      '≤ 1.0×',
    ]);

    // 2. 20 detached containers, one shim each (the default), then sharing shims (shim.group)
    const ours = await detached(engine, image);
    const warmPss = await warmShimPss(engine);
    // Like for like: containerd's `ctr run -d` gives its containers no network.
    const oursNone = await detached(engine, image, ['--network', 'none']);
    const grouped = await detached(groupEngine, image);
    const t0 = performance.now();
    for (let i = 0; i < DETACHED; i++) await ctr('run', '-d', image, `d-${i}`, 'sleep', '1000');
    const theirsMs = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 1000));
    const theirShims = await pidsWith('containerd-shim-runc-v2', containerd.address);
    const theirsPss = (await Promise.all(theirShims.map(pssKb))).reduce((a, b) => a + b, 0) / DETACHED / 1024;
    rows.push([
      `${DETACHED} detached containers, started one after another`,
      `${(ours.ms / 1000).toFixed(2)} s (bridge), ${(oursNone.ms / 1000).toFixed(2)} s (--network none); ${(grouped.ms / 1000).toFixed(2)} s with \`shim.group\` ${GROUP} (bridge)`,
      `${(theirsMs / 1000).toFixed(2)} s (\`ctr run -d\`, no network)`,
      `${(ours.ms / theirsMs).toFixed(2)}× / ${(oursNone.ms / theirsMs).toFixed(2)}× / ${(grouped.ms / theirsMs).toFixed(2)}×`,
      '≤ 1.0×',
    ]);
    rows.push([
      'memory per running container (PSS of the shims / containers)',
      `${ours.pss.toFixed(2)} MB (${ours.shims} shims; ${ours.withZygote.toFixed(2)} MB with their zygote's share); ${grouped.pss.toFixed(2)} MB with \`shim.group\` ${GROUP} (${grouped.shims} shims)`,
      `${theirsPss.toFixed(2)} MB (${theirShims.length} shims)`,
      // The ratios count the zygote's share: the memory a container costs, all told.
      `${(ours.withZygote / theirsPss).toFixed(1)}× / ${(grouped.withZygote / theirsPss).toFixed(1)}×`,
      'toward 1×',
    ]);
    extraNotes.push(
      `Besides its containers' shims, container-service keeps one warm shim (${warmPss.toFixed(1)} MB PSS) so that a start never waits for a shim to boot, and the zygote its shims are forked from (${ours.zygote.toFixed(1)} MB PSS with 20 shims beside it; its part in the memory row's second figure).`,
    );
    for (let i = 0; i < DETACHED; i++) {
      await ctr('task', 'kill', '-s', 'SIGKILL', `d-${i}`).catch(() => undefined);
    }
    await new Promise((r) => setTimeout(r, 500));
    for (let i = 0; i < DETACHED; i++) {
      await ctr('task', 'rm', '-f', `d-${i}`).catch(() => undefined);
      await ctr('containers', 'rm', `d-${i}`).catch(() => undefined);
    }
  } finally {
    await containerd?.stop();
    // runc leaves its namespace's cgroup parent (/bench in each hierarchy) behind, empty: ours to remove.
    for (const h of await readdir('/sys/fs/cgroup').catch(() => [])) rmdirQuiet(join('/sys/fs/cgroup', h, 'bench'));
    await groupEngine?.stop();
    await engine.stop();
    await registry.stop();
    rmSync(work, { recursive: true, force: true });
  }

  // 3. the sub-benches, each with its own engine and peer
  // More rounds for the pull: a disk's pace here varies by a second from one pull to the next.
  const pull = await subBench('apps/image-service/bench/pull.mjs', PULL_ROUNDS);
  const p = { ctr: median(pull.ctr), cd: median(pull.containerd) };
  rows.push([
    `pull + unpack, ${pull.sizes.length}-layer Debian image (${(pull.sizes.reduce((a, b) => a + b, 0) / 1e6).toFixed(0)} MB gzip), local registry`,
    `${p.ctr.toFixed(0)} ms`,
    `${p.cd.toFixed(0)} ms (\`ctr pull\`)`,
    `${(p.ctr / p.cd).toFixed(2)}×`,
    '≤ 0.8×',
  ]);
  const net = await subBench('apps/network-service/bench/attach.mjs', 5);
  rows.push([
    'network attach with a port map (sandbox + attach + remove)',
    `${net.ctrMs.toFixed(1)} ms`,
    `${net.cniMs.toFixed(1)} ms (CNI bridge + host-local + portmap)`,
    `${net.ratio.toFixed(2)}×`,
    '',
  ]);

  const table = [
    `Measured on this machine on ${new Date().toISOString().slice(0, 10)}, medians (${ROUNDS} rounds for run, each command ${QUIET_MS} ms after the one before; ${PULL_ROUNDS} for pull, 5 for network); containerd 1.6 with runc 1.1 (Debian). podman + crun: not installed here.`,
    '',
    '| | ctr | containerd | ratio | target |',
    '|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.join(' | ')} |`),
    '',
    `Node's own start here: ${median(t.node).toFixed(0)} ms.`,
    ...extraNotes.map((n) => `\n${n}`),
  ].join('\n');
  process.stdout.write(`${table}\n`);
  writeFileSync(join(root, 'bench/results.md'), `${table}\n`);
  const readme = join(root, 'README.md');
  const text = readFileSync(readme, 'utf8');
  const start = '<!-- bench:start -->';
  const end = '<!-- bench:end -->';
  if (text.includes(start) && text.includes(end)) {
    writeFileSync(
      readme,
      `${text.slice(0, text.indexOf(start) + start.length)}\n${table}\n${text.slice(text.indexOf(end))}`,
    );
  }
}

await main();
