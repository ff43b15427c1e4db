#!/usr/bin/env node
/**
 * Adds up the vitest JSON reports in .reports/ and prints, last, the line CI
 * reads: `N passed, N failed`. Steps that failed before any test could run
 * (build, lint, set-up) are named in .reports/failed-steps and count as failed.
 * Exit 1 when anything failed.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '../..');
const reports = join(root, '.reports');
let passed = 0;
let failed = 0;
let skipped = 0;
const lines = [];
const files = existsSync(reports) ? readdirSync(reports).filter((f) => f.endsWith('.json')) : [];
for (const f of files.sort()) {
  const r = JSON.parse(readFileSync(join(reports, f), 'utf8'));
  passed += r.numPassedTests;
  failed += r.numFailedTests;
  skipped += r.numPendingTests + (r.numTodoTests ?? 0);
  lines.push(`  ${f.replace(/\.json$/, '').padEnd(20)} ${r.numPassedTests} passed, ${r.numFailedTests} failed`);
  // A file that failed to load has no failed test but must count.
  for (const suite of r.testResults ?? []) {
    if (suite.status === 'failed' && (suite.assertionResults ?? []).every((a) => a.status !== 'failed')) {
      failed++;
      lines.push(`    failed to run: ${suite.name}: ${(suite.message ?? '').split('\n')[0]}`);
    }
  }
}
const stepsFile = join(reports, 'failed-steps');
if (existsSync(stepsFile)) {
  for (const step of readFileSync(stepsFile, 'utf8').split('\n').filter(Boolean)) {
    failed++;
    lines.push(`  step failed: ${step}`);
  }
}
console.log('\nTest summary:');
for (const l of lines) console.log(l);
console.log(`${passed} passed, ${failed} failed${skipped ? `, ${skipped} skipped` : ''}`);
process.exit(failed > 0 ? 1 : 0);
