#!/usr/bin/env node
/**
 * The layering of STYLE.md, checked on every import of every TypeScript file:
 * - packages/* never import apps/*;
 * - an app never imports another app;
 * - only packages/sys loads koffi;
 * - only generated code lives in packages/api (nothing but src/gen);
 * - no relative import climbs out of its own project.
 * Usage: layers.mjs [DIR...] (default: the whole repo). Exit 1 on a violation.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

const root = resolve(dirname(new URL(import.meta.url).pathname), '../..');
const appNames = readdirSync(join(root, 'apps'));

function* tsFiles(dir) {
  for (const name of readdirSync(dir)) {
    if (['node_modules', 'dist', 'gen', '.nx'].includes(name)) continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* tsFiles(p);
    else if (/\.(ts|mts|js|mjs)$/.test(name) && !name.endsWith('.d.ts')) yield p;
  }
}

/** The project a path belongs to: "apps/ctrctl", "packages/sys", "e2e", "tools". */
function projectOf(path) {
  const parts = relative(root, path).split(sep);
  return ['apps', 'packages'].includes(parts[0]) ? `${parts[0]}/${parts[1]}` : parts[0];
}

const IMPORT_RE =
  /(?:^|[^\w.])(?:import|export)\s[^'"`;]*?from\s*['"]([^'"]+)['"]|(?:^|[^\w.])import\s*\(\s*['"]([^'"]+)['"]\s*\)|^\s*import\s*['"]([^'"]+)['"]/gm;

export function checkFile(file, text) {
  const problems = [];
  const project = projectOf(file);
  for (const m of text.matchAll(IMPORT_RE)) {
    const spec = m[1] ?? m[2] ?? m[3];
    const say = (why) => problems.push(`${relative(root, file)}: imports '${spec}': ${why}`);
    if (spec === 'koffi' && project !== 'packages/sys') say('only packages/sys may load koffi');
    const app = spec.match(/^@ctr\/([\w-]+)/)?.[1];
    if (app && appNames.includes(app)) {
      if (project.startsWith('packages/')) say('packages never import apps');
      else if (project.startsWith('apps/') && project !== `apps/${app}`) say('an app never imports another app');
    }
    if (spec.startsWith('.')) {
      const target = resolve(dirname(file), spec);
      if (projectOf(target) !== project) say(`relative import out of ${project}; import the package instead`);
    }
  }
  return problems;
}

// Run as a script; imported (by its test) only checkFile is used.
if (process.argv[1] === new URL(import.meta.url).pathname) main();

function main() {
  const dirs = process.argv.slice(2).map((d) => resolve(d));
  const problems = [];
  for (const dir of dirs.length ? dirs : ['apps', 'packages', 'e2e', 'tools'].map((d) => join(root, d))) {
    for (const file of tsFiles(dir)) problems.push(...checkFile(file, readFileSync(file, 'utf8')));
  }
  // packages/api holds generated code only.
  const apiSrc = join(root, 'packages/api/src');
  for (const name of existsSync(apiSrc) ? readdirSync(apiSrc) : []) {
    if (name !== 'gen') problems.push(`packages/api/src/${name}: only generated code lives in packages/api`);
  }
  for (const p of problems) console.error(p);
  process.exit(problems.length ? 1 : 0);
}
