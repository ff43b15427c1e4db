#!/usr/bin/env node
/**
 * Runs one project's tests with vitest and keeps its JSON report in
 * .reports/<project>.json, from which tools/test/summary.mjs prints the
 * closing `N passed, N failed` line. Usage: vitest-run.mjs DIR NAME [vitest args]
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '../..');
const [dir, name, ...extra] = process.argv.slice(2);
if (!dir || !name) {
  console.error('usage: vitest-run.mjs DIR NAME [vitest args...]');
  process.exit(2);
}
const reports = join(root, '.reports');
mkdirSync(reports, { recursive: true });
const report = join(reports, `${name}.json`);
rmSync(report, { force: true });
const vitest = join(root, 'node_modules/vitest/vitest.mjs');
const result = spawnSync(
  process.execPath,
  [
    vitest,
    'run',
    '--root',
    resolve(root, dir),
    '--config',
    join(root, 'vitest.config.ts'),
    '--passWithNoTests',
    '--reporter=default',
    '--reporter=json',
    `--outputFile.json=${report}`,
    ...extra,
  ],
  { stdio: 'inherit' },
);
process.exit(result.status ?? 1);
