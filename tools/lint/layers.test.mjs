import { describe, expect, it } from 'vitest';
import { checkFile } from './layers.mjs';

const root = new URL('../..', import.meta.url).pathname;
const at = (p) => `${root}${p}`;

describe('the layering check', () => {
  it('lets an app import packages', () => {
    expect(checkFile(at('apps/ctrctl/src/a.ts'), "import { x } from '@ctr/common/grpc';\nimport './b.js';")).toEqual(
      [],
    );
  });
  it('refuses a package importing an app', () => {
    expect(checkFile(at('packages/common/src/a.ts'), "import { x } from '@ctr/supervisor';")[0]).toMatch(
      /packages never import apps/,
    );
  });
  it('refuses an app importing another app, also through a relative path', () => {
    expect(checkFile(at('apps/ctrctl/src/a.ts'), "import { x } from '@ctr/snapshotter';")[0]).toMatch(/another app/);
    expect(checkFile(at('apps/ctrctl/src/a.ts'), "export * from '../../supervisor/src/api.js';")[0]).toMatch(
      /relative import out of apps\/ctrctl/,
    );
  });
  it('keeps koffi inside packages/sys, dynamic imports included', () => {
    expect(checkFile(at('packages/sys/src/libc.ts'), "import koffi from 'koffi';")).toEqual([]);
    expect(checkFile(at('apps/shim/src/a.ts'), "const k = await import('koffi');")[0]).toMatch(/only packages\/sys/);
  });
});
