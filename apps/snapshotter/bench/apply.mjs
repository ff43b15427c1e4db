#!/usr/bin/env node
/**
 * The layer-apply benchmark (issue: Snapshotter), run with `nx run snapshotter:bench`.
 *
 * The layer: a Debian root file system's bulk, tarred from this Debian host
 * (BENCH_DIRS, default etc usr/bin usr/sbin usr/share/doc usr/lib/python3 — some
 * hundreds of MB in tens of thousands of files), as pax with xattrs, the way
 * a registry would serve it: gzip, and zstd.
 *
 * Extraction, in one run, interleaved, BENCH_ROUNDS rounds, each into a fresh
 * directory on the same file system and ended with syncfs (ours syncs before
 * a commit; the others get the same flush so the disk work is equal):
 *   - ctr:      the snapshotter's applier (worker thread, fd-relative writes, diff id computed)
 *   - gnu-tar:  `tar -x` with owners, permissions and xattrs (-z / --zstd, so it decompresses in a second process)
 *   - node-tar: tar.x() with preservePaths (unsafe for layers: throughput only)
 * and the parsers alone over the uncompressed tar (no writes): ours, tar-stream, node-tar.
 *
 * Prints a table and one JSON line; exits 0 (figures, not assertions).
 */
import { execFileSync, spawn } from 'node:child_process';
import { closeSync, createReadStream, openSync, rmSync, statSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { syncfs } from '@ctr/sys';
import { TarReader } from '@ctr/tar';
import * as nodeTar from 'tar';
import tarStream from 'tar-stream';
import { applyLayer } from '../dist/apply/apply.js';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const DIRS = (process.env.BENCH_DIRS ?? 'etc usr/bin usr/sbin usr/share/doc usr/lib/python3').split(/\s+/);
const work = process.env.BENCH_DIR ?? `/var/tmp/ctr-bench-apply-${process.pid}`;

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const now = () => performance.now();

function flush(dir) {
  const fd = openSync(dir, 'r');
  try {
    syncfs(fd);
  } finally {
    closeSync(fd);
  }
}

function sh(cmd, args) {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let err = '';
    p.stderr.on('data', (d) => (err += d));
    p.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited ${code}: ${err}`))));
  });
}

const extractors = {
  ctr: (file, dest) => applyLayer({ root: dest, lowers: [], expectedDiffId: '', path: file }),
  'gnu-tar': async (file, dest, kind) => {
    const z = kind === 'gzip' ? ['-z'] : kind === 'zstd' ? ['--zstd'] : [];
    await sh('tar', [
      ...z,
      '-x',
      '--numeric-owner',
      '--same-owner',
      '-p',
      '--xattrs',
      '--xattrs-include=*',
      '-C',
      dest,
      '-f',
      file,
    ]);
    flush(dest);
  },
  'node-tar': async (file, dest) => {
    await nodeTar.x({ file, cwd: dest, preservePaths: true, preserveOwner: true, unlink: true, maxReadSize: 1 << 20 });
    flush(dest);
  },
};

const parsers = {
  ctr: (file) =>
    new Promise((resolve, reject) => {
      const r = new TarReader({ entry() {}, data() {}, end() {} });
      createReadStream(file, { highWaterMark: 1 << 20 })
        .on('data', (c) => r.write(c))
        .on('end', () => {
          r.end();
          resolve();
        })
        .on('error', reject);
    }),
  'tar-stream': (file) =>
    new Promise((resolve, reject) => {
      const ex = tarStream.extract();
      ex.on('entry', (_h, stream, next) => {
        stream.on('end', next);
        stream.resume();
      });
      ex.on('finish', resolve);
      ex.on('error', reject);
      createReadStream(file, { highWaterMark: 1 << 20 }).pipe(ex);
    }),
  'node-tar': (file) => nodeTar.t({ file, maxReadSize: 1 << 20, onReadEntry: (e) => e.resume() }),
};

async function main() {
  await mkdir(work, { recursive: true });
  for (const sig of ['SIGINT', 'SIGTERM'])
    process.once(sig, () => {
      rmSync(work, { recursive: true, force: true });
      process.exit(130);
    });
  try {
    const plain = join(work, 'layer.tar');
    console.error(`building the layer from this host's ${DIRS.join(' ')} ...`);
    execFileSync('tar', ['--format=pax', '--xattrs', '--numeric-owner', '-C', '/', '-cf', plain, ...DIRS], {
      stdio: ['ignore', 'ignore', 'ignore'],
    });
    execFileSync('sh', ['-c', `gzip -6 -c ${plain} > ${plain}.gz && zstd -q -3 -c ${plain} > ${plain}.zst`]);
    const size = statSync(plain).size;
    const entries = Number(execFileSync('sh', ['-c', `tar -tf ${plain} | wc -l`], { encoding: 'utf8' }));
    const layers = { gzip: `${plain}.gz`, zstd: `${plain}.zst`, none: plain };

    const times = {};
    for (let round = 0; round < ROUNDS; round++) {
      for (const [kind, file] of Object.entries(layers)) {
        for (const [name, fn] of Object.entries(extractors)) {
          const dest = join(work, `x-${name}`);
          await rm(dest, { recursive: true, force: true });
          await mkdir(dest);
          flush(work);
          const t0 = now();
          await fn(file, dest, kind);
          const key = `${name} ${kind}`;
          (times[key] ??= []).push(now() - t0);
          await rm(dest, { recursive: true, force: true });
        }
      }
      for (const [name, fn] of Object.entries(parsers)) {
        const t0 = now();
        await fn(plain);
        (times[`parse ${name}`] ??= []).push(now() - t0);
      }
    }

    const mb = size / 1e6;
    const result = { layerMB: Math.round(mb), entries, rounds: ROUNDS, mbPerSec: {}, ratioToGnuTar: {} };
    console.log(`layer: ${mb.toFixed(0)} MB uncompressed, ${entries} entries; median of ${ROUNDS} rounds`);
    console.log('engine              compression   ms      MB/s (uncompressed)');
    for (const [key, xs] of Object.entries(times)) {
      const t = median(xs);
      result.mbPerSec[key] = Number((mb / (t / 1000)).toFixed(1));
      const [name, kind] = key.split(' ');
      console.log(
        `${name.padEnd(20)}${(kind ?? '').padEnd(14)}${t.toFixed(0).padStart(6)}  ${(mb / (t / 1000)).toFixed(1).padStart(8)}`,
      );
    }
    for (const kind of Object.keys(layers))
      result.ratioToGnuTar[kind] = Number((median(times[`gnu-tar ${kind}`]) / median(times[`ctr ${kind}`])).toFixed(2));
    console.log(`ctr ÷ GNU tar throughput: ${JSON.stringify(result.ratioToGnuTar)}`);
    console.log(JSON.stringify(result));
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

await main();
