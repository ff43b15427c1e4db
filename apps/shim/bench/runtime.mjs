#!/usr/bin/env node
/**
 * The runtime benchmark (issue: Runtime), run with `nx run shim:bench`:
 *
 * 1. create+start+wait+delete of `true` through a running shim, against
 *    `runc run` of the same bundle (runc deletes on exit), interleaved, in one
 *    run; and the same with a shim started and shut down per container.
 * 2. The memory we keep per running container: PSS of the shim plus
 *    ctr-init's waiting parent, over N containers each with its own shim.
 *
 * Prints a table and one JSON line; exits 0 (figures, not assertions).
 */
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { removeCgroupIfEmpty } from '@ctr/cgroups';
import { defaultSeccomp, defaultSpec, DEFAULT_CAPABILITIES } from '@ctr/oci';
import { startShim } from '@ctr/shim-client';
import { buildBusyboxRootfs, mustRun, randomInstance, run, TestNats, waitFor } from '@ctr/testkit';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 30);
const CONTAINERS = Number(process.env.BENCH_CONTAINERS ?? 10);
const instance = randomInstance('b');
const dir = `/tmp/ctr-${instance}`;
const engine = { root: join(dir, 'root'), state: join(dir, 'state'), instance, eventsUrl: '' };
const rootfs = join(dir, 'rootfs');

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const ms = (t0) => Number(process.hrtime.bigint() - t0) / 1e6;

/** A bundle; runc gets a cgroupsPath of its own, the shim makes one per task (<parent>/<id>). */
async function bundle(name, args, forRunc = false) {
  const b = join(dir, 'bundles', name);
  await mkdir(b, { recursive: true });
  const spec = defaultSpec(rootfs, args);
  spec.linux.seccomp = defaultSeccomp(DEFAULT_CAPABILITIES);
  if (forRunc) spec.linux.cgroupsPath = `/ctr-${instance}/${name}`;
  await writeFile(join(b, 'config.json'), JSON.stringify(spec));
  return b;
}

/** Creates and starts a long-running container; returns ctr-init's waiting parent (the container's parent). */
async function startSleeper(client, id, b) {
  const { pid } = await client.create({
    id,
    bundle: b,
    rootfs: [],
    terminal: false,
    stdin: false,
    cgroupParent: '',
    runtime: '',
  });
  await client.start({ id, execId: '' });
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

async function pss(pid) {
  const text = await readFile(`/proc/${pid}/smaps_rollup`, 'utf8').catch(() => '');
  return Number(text.match(/^Pss:\s+(\d+) kB/m)?.[1] ?? 0);
}

async function main() {
  const nats = await TestNats.start();
  engine.eventsUrl = nats.url;
  await buildBusyboxRootfs(rootfs);
  const shim = await startShim(engine, 'bench');
  const c = shim.client;
  const ours = [];
  const oursWithShim = [];
  const runc = [];
  const runcRoot = join(dir, 'runc');
  try {
    const b = await bundle('t', ['true']);
    const rb = await bundle('runc', ['true'], true);
    const task = async (client, id) => {
      await client.create({ id, bundle: b, rootfs: [], terminal: false, stdin: false, cgroupParent: '', runtime: '' });
      await client.start({ id, execId: '' });
      await client.wait({ id, execId: '' });
      await client.delete({ id, execId: '' });
    };
    // Warm both paths once.
    await task(c, 'warm');
    await mustRun('runc', ['--root', runcRoot, 'run', '--bundle', rb, `${instance}-warm`]);
    for (let i = 0; i < ROUNDS; i++) {
      let t0 = process.hrtime.bigint();
      await task(c, `t${i}`);
      ours.push(ms(t0));
      t0 = process.hrtime.bigint();
      await mustRun('runc', ['--root', runcRoot, 'run', '--bundle', rb, `${instance}-r${i}`]);
      runc.push(ms(t0));
      t0 = process.hrtime.bigint();
      const s = await startShim(engine, `s${i}`);
      await task(s.client, `s${i}`);
      await s.client.shutdown({ id: '', now: false });
      s.client.close();
      await waitFor(async () => !(await readFile(`/proc/${s.pid}/stat`, 'utf8').catch(() => '')), 'shim exit');
      oursWithShim.push(ms(t0));
    }

    // Memory per running container: its own shim + ctr-init's waiting parent.
    const sleeper = await bundle('sleep', ['sleep', '1000']);
    const running = [];
    for (let i = 0; i < CONTAINERS; i++) {
      const s = await startShim(engine, `m${i}`);
      running.push({ s, waiter: await startSleeper(s.client, `m${i}`, sleeper) });
    }
    await new Promise((r) => setTimeout(r, 1000));
    let shimKb = 0;
    let waiterKb = 0;
    for (const { s, waiter } of running) {
      shimKb += await pss(s.pid);
      waiterKb += await pss(waiter);
    }
    for (const { s } of running) {
      await s.client.shutdown({ id: '', now: true });
      s.client.close();
    }

    // The same containers in one shim (the API is keyed by container id, as containerd groups a pod's).
    const group = await startShim(engine, 'group');
    let groupWaiterKb = 0;
    const groupWaiters = [];
    for (let i = 0; i < CONTAINERS; i++) groupWaiters.push(await startSleeper(group.client, `g${i}`, sleeper));
    await new Promise((r) => setTimeout(r, 1000));
    const groupShimKb = await pss(group.pid);
    for (const w of groupWaiters) groupWaiterKb += await pss(w);
    await group.client.shutdown({ id: '', now: true });
    group.client.close();

    const result = {
      rounds: ROUNDS,
      oursMedianMs: median(ours),
      runcMedianMs: median(runc),
      ratio: median(ours) / median(runc),
      oursWithShimMedianMs: median(oursWithShim),
      ratioWithShim: median(oursWithShim) / median(runc),
      oursMeanMs: mean(ours),
      runcMeanMs: mean(runc),
      containers: CONTAINERS,
      pssPerContainerMb: (shimKb + waiterKb) / CONTAINERS / 1024,
      pssShimMb: shimKb / CONTAINERS / 1024,
      pssWaiterMb: waiterKb / CONTAINERS / 1024,
      pssPerContainerGroupedMb: (groupShimKb + groupWaiterKb) / CONTAINERS / 1024,
      containerdShimPssMb: 2.95,
    };
    const f = (x) => x.toFixed(2);
    console.log(`create+start+wait+delete of \`true\`, ${ROUNDS} rounds each, interleaved (median ms):`);
    console.log(`  ctr (running shim)        ${f(result.oursMedianMs)}`);
    console.log(`  ctr (shim per container)  ${f(result.oursWithShimMedianMs)}`);
    console.log(`  runc run                  ${f(result.runcMedianMs)}`);
    console.log(`  ratio ctr/runc            ${f(result.ratio)}x  (with shim start: ${f(result.ratioWithShim)}x)`);
    console.log(`PSS per running container over ${CONTAINERS} (MB):`);
    console.log(
      `  ctr shim + ctr-init       ${f(result.pssPerContainerMb)}  (shim ${f(result.pssShimMb)}, ctr-init ${f(result.pssWaiterMb)})`,
    );
    console.log(`  ctr, ${CONTAINERS} in one shim      ${f(result.pssPerContainerGroupedMb)}`);
    console.log(`  containerd-shim-runc-v2   ${f(result.containerdShimPssMb)}  (the issue's figure for this machine)`);
    console.log(JSON.stringify(result));
  } finally {
    await c.shutdown({ id: '', now: true }).catch(() => undefined);
    c.close();
    await run('runc', ['--root', runcRoot, 'list', '-q']).then(async (r) => {
      for (const id of r.stdout.split('\n').filter(Boolean))
        await run('runc', ['--root', runcRoot, 'delete', '-f', id]);
    });
    await removeCgroupIfEmpty(`ctr-${instance}`).catch(() => undefined);
    await nats.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
