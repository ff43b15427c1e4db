#!/usr/bin/env node
/**
 * The pull benchmark (issue: Image service), run with `nx run image-service:bench`.
 *
 * The image: three gzip layers tarred (GNU tar) from this Debian host's files,
 * the bulk of a Debian root file system (BENCH_LAYERS: `;`-separated layers of
 * space-separated dirs), pushed by skopeo to a local docker-registry.
 *
 * In one run, interleaved, BENCH_ROUNDS rounds, each from an empty store:
 *   - ctr:         `ctrctl pull` against an isolated ctr engine (fetch, verify, unpack into overlay snapshots, syncfs)
 *   - containerd:  `ctr pull --plain-http` against an isolated containerd 1.6 (Debian's; fetched with
 *                  apt-get download into the bench's directory, never installed) with its overlayfs snapshotter
 * Each timing is the CLI's wall time from start to exit; the image is removed
 * (and garbage collected) between rounds, and before the next pull the disk is
 * let settle: ctr's snapshot directories, which its snapshotter removes in the
 * background, are waited for, then `sync` writes out what either side left
 * dirty, so neither pull pays for the other's writes or removals. Prints a
 * markdown table and one JSON line.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import {
  buildOciLayout,
  containerdBinaries,
  median,
  pushLayout,
  startContainerd,
  TestEngine,
  TestRegistry,
  timedRun,
} from '@ctr/testkit';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const LAYERS = (
  process.env.BENCH_LAYERS ??
  'etc usr/sbin usr/lib/python3.11;usr/share/perl usr/share/i18n usr/share/zoneinfo;usr/lib/x86_64-linux-gnu/perl-base usr/lib/x86_64-linux-gnu/perl usr/lib/x86_64-linux-gnu/gconv usr/share/perl5 usr/lib/apt usr/lib/systemd usr/share/mime'
)
  .split(';')
  .map((l) => l.trim().split(/\s+/));
const work = process.env.BENCH_DIR ?? `/var/tmp/ctr-bench-pull-${process.pid}`;
const peers = join(process.cwd(), '.bench/peers');

const run = async (cmd, args, env = process.env) => (await timedRun(cmd, args, { env })).ms;

/** The disk quiet before a timed pull: ctr's snapshot directories gone (removed in the background), then a sync. */
async function settle(engine) {
  const dir = join(engine.root, 'snapshots/overlay2/snapshots');
  for (let i = 0; i < 600 && existsSync(dir) && readdirSync(dir).length; i++)
    await new Promise((r) => setTimeout(r, 50));
  execFileSync('sync');
}

async function main() {
  rmSync(work, { recursive: true, force: true });
  mkdirSync(work, { recursive: true });
  const bin = containerdBinaries(peers);
  const registry = await TestRegistry.start();
  const engine = await TestEngine.start();
  let containerd;
  try {
    containerd = await startContainerd(bin, join(work, 'containerd'));
    // The image, pushed by skopeo.
    const tars = LAYERS.map((dirs) =>
      execFileSync('tar', ['-C', '/', '--sort=name', '-cf', '-', ...dirs.filter((d) => existsSync(`/${d}`))], {
        maxBuffer: 1 << 30,
      }),
    );
    const image = await buildOciLayout(join(work, 'oci'), tars, { Cmd: ['bash'] }, 'bench');
    const ref = `${registry.host}/debian:bench`;
    await pushLayout(image.dir, 'bench', ref);
    const sizes = image.layerDigests.map((d) =>
      Number(execFileSync('stat', ['-c', '%s', join(image.dir, 'blobs/sha256', d.slice(7))], { encoding: 'utf8' })),
    );
    const total = sizes.reduce((a, b) => a + b, 0);

    const ctrEnv = engine.env;
    const ctr = join(bin, 'ctr');
    const cd = ['--address', containerd.address, '--namespace', 'bench'];
    const results = { ctr: [], containerd: [] };
    for (let round = 0; round < ROUNDS; round++) {
      const order = round % 2 ? ['containerd', 'ctr'] : ['ctr', 'containerd'];
      for (const who of order) {
        await settle(engine);
        if (who === 'ctr') {
          results.ctr.push(
            await run(
              process.execPath,
              [join(process.cwd(), 'apps/ctrctl/dist/bundle/main.cjs'), 'pull', '-q', ref],
              ctrEnv,
            ),
          );
          await run(process.execPath, [join(process.cwd(), 'apps/ctrctl/dist/bundle/main.cjs'), 'rmi', ref], ctrEnv);
        } else {
          results.containerd.push(await run(ctr, [...cd, 'images', 'pull', '--plain-http', ref]));
          await run(ctr, [...cd, 'images', 'rm', '--sync', ref]);
        }
      }
      process.stderr.write(
        `round ${round + 1}/${ROUNDS}: ctr ${results.ctr.at(-1).toFixed(0)} ms, containerd ${results.containerd.at(-1).toFixed(0)} ms\n`,
      );
    }
    const ours = median(results.ctr);
    const theirs = median(results.containerd);
    const mb = (n) => (n / 1e6).toFixed(1);
    const table = [
      `Pull + unpack of a ${image.layerDigests.length}-layer image (${mb(total)} MB compressed: ${sizes.map(mb).join(' + ')} MB) from a local registry, median of ${ROUNDS}`,
      '',
      '| | time | ratio to containerd |',
      '|---|---|---|',
      `| ctr (\`ctrctl pull\`) | ${ours.toFixed(0)} ms | ${(ours / theirs).toFixed(2)}× |`,
      `| containerd 1.6 (\`ctr pull\`) | ${theirs.toFixed(0)} ms | 1.00× |`,
      '',
      `target: ctr at most 0.8× containerd's time`,
    ].join('\n');
    process.stdout.write(`${table}\n`);
    process.stdout.write(
      `${JSON.stringify({ bench: 'pull', sizes, ctr: results.ctr, containerd: results.containerd })}\n`,
    );
  } finally {
    await containerd?.stop();
    await engine.stop();
    await registry.stop();
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
