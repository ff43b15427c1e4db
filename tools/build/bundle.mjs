#!/usr/bin/env node
/**
 * Bundles an app's compiled entry (dist/main.js) and everything it imports
 * into dist/bundle/, for the processes whose start-up a user waits on: ctrctl
 * (every command) and the shim (every container). Node then reads a handful
 * of files instead of resolving and loading some three hundred modules.
 * Commands loaded on demand stay separate chunks. koffi stays outside: it
 * loads its native addon from its own package.
 *
 * The generated API modules build grpc-js client classes as they load
 * (makeGenericClientConstructor). Those calls are marked pure and grpc-js
 * free of side effects, so a program that uses none of it (ctrctl talks
 * through @ctr/common/grpc-client) carries none of it.
 *
 * --format cjs bundles CommonJS instead (dist/bundle/main.cjs), which Node
 * loads without its ES module loader and whose code V8's compile cache then
 * serves better: ctrctl (`ps -q` in 40 ms rather than 45) and the shim (a
 * boot of 76 ms of CPU rather than 107) are built so.
 *
 *   node tools/build/bundle.mjs apps/ctrctl [--format cjs]
 */
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { build } from 'rolldown';

/**
 * No comments, and string literals escaped to ASCII: V8 holds a script's
 * source as long as its functions may be compiled, one byte a character, but
 * two for the whole script if one character is past Latin-1 (an en dash in a
 * pino message, arrows in our comments). The shim's source so takes 0.5 MB of
 * its heap rather than 1 MB.
 */
const LATIN1 = { charset: 'ascii', comments: false };

const project = resolve(process.argv[2] ?? '.');
const at = process.argv.indexOf('--format');
const format = at > 0 ? process.argv[at + 1] : 'esm';
if (format !== 'esm' && format !== 'cjs') throw new Error(`--format ${format}: esm or cjs`);
const ext = format === 'cjs' ? 'cjs' : 'js';
const out = join(project, 'dist/bundle');
rmSync(out, { recursive: true, force: true });
await build({
  input: join(project, 'dist/main.js'),
  platform: 'node',
  external: ['koffi', /^node:/],
  logLevel: 'warn',
  treeshake: {
    manualPureFunctions: ['makeGenericClientConstructor'],
    // Node's own modules do nothing on import: one imported only for what was shaken off is not
    // loaded at all (node:crypto's ESM facade alone loads WebCrypto).
    moduleSideEffects: (id, external) =>
      !(external && id.startsWith('node:')) && !id.includes('/node_modules/@grpc/grpc-js/'),
  },
  output: { dir: out, format, entryFileNames: `main.${ext}`, chunkFileNames: `[name]-[hash].${ext}`, ...LATIN1 },
});
