import { describe, expect, it } from 'vitest';
import { checkFile } from './layers.mjs';

const root = new URL('../..', import.meta.url).pathname;
const at = (p) => `${root}${p}`;
// Sources are assembled so that this file itself holds no import the check would judge.
const q = "'";
const importFrom = (spec) => `import { x } from ${q}${spec}${q};`;
const exportFrom = (spec) => `export * from ${q}${spec}${q};`;
const dynamic = (spec) => `const m = await import(${q}${spec}${q});`;

describe('the layering check', () => {
  it('lets an app import packages and its own files', () => {
    expect(checkFile(at('apps/ctrctl/src/a.ts'), `${importFrom('@ctr/common/grpc')}\n${importFrom('./b.js')}`)).toEqual(
      [],
    );
  });
  it('refuses a package importing an app', () => {
    expect(checkFile(at('packages/common/src/a.ts'), importFrom('@ctr/supervisor'))[0]).toMatch(
      /packages never import apps/,
    );
  });
  it('refuses an app importing another app, also through a relative path', () => {
    expect(checkFile(at('apps/ctrctl/src/a.ts'), importFrom('@ctr/snapshotter'))[0]).toMatch(/another app/);
    expect(checkFile(at('apps/ctrctl/src/a.ts'), exportFrom('../../supervisor/src/api.js'))[0]).toMatch(
      /relative import out of apps\/ctrctl/,
    );
  });
  it('keeps koffi inside packages/sys, dynamic imports included', () => {
    expect(checkFile(at('packages/sys/src/libc.ts'), importFrom('koffi'))).toEqual([]);
    expect(checkFile(at('apps/shim/src/a.ts'), dynamic('koffi'))[0]).toMatch(/only packages\/sys/);
  });
});
