/**
 * The image commands through ctrctl only, as a docker user types them,
 * against an isolated engine and a real registry with a skopeo-pushed image.
 */
import { execFileSync } from 'node:child_process';
import { statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import {
  buildBusyboxRootfs,
  buildOciLayout,
  CTRCTL_MAIN,
  freePort,
  type LayoutImage,
  pushLayout,
  TestEngine,
  TestRegistry,
  tarLayer,
} from '@ctr/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let engine: TestEngine;
let registry: TestRegistry;
let authRegistry: TestRegistry;
let app: LayoutImage;
let ref: string;
const creds = { username: 'cli', password: 'cli-secret' };

beforeAll(async () => {
  [engine, registry, authRegistry] = await Promise.all([
    TestEngine.start(),
    TestRegistry.start(),
    TestRegistry.start({ auth: creds }),
  ]);
  const rootfs = join(engine.dir, 'rootfs');
  await buildBusyboxRootfs(rootfs);
  app = await buildOciLayout(join(engine.dir, 'oci'), [rootfs, await tarLayer(rootfs)], { Cmd: ['sh'] }, '1');
  await pushLayout(app.dir, '1', `${registry.host}/app:1`);
  ref = `${registry.host}/app:1`;
}, 120_000);

afterAll(async () => {
  // The registry stops even when the engine's teardown fails its leak check.
  try {
    await engine?.stop();
  } finally {
    await registry?.stop();
  }
  await authRegistry?.stop();
});

const ctrctl = (args: string[], input?: string) => engine.ctrctl(args, { input });
const short = (d: string) => d.slice(7, 19);

describe('ctrctl image commands', () => {
  it('pull prints docker-style lines when not on a terminal, and the name last', async () => {
    const r = await ctrctl(['pull', ref]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines[0]).toBe('1: Pulling from app');
    expect(lines).toContain(`${short(app.layerDigests[0])}: Pulling fs layer`);
    expect(lines).toContain(`${short(app.layerDigests[1])}: Pull complete`);
    expect(lines.at(-3)).toBe(`Digest: ${app.manifestDigest}`);
    expect(lines.at(-2)).toBe(`Status: Downloaded newer image for ${ref}`);
    expect(lines.at(-1)).toBe(ref);
    const again = await ctrctl(['pull', '-q', ref]);
    expect(again.stdout).toBe(`${ref}\n`);
    expect((await ctrctl(['pull', ref])).stdout).toContain(`Status: Image is up to date for ${ref}`);
  });

  it('pull on a terminal draws progress bars on stderr', async () => {
    await ctrctl(['rmi', ref]);
    const out = execFileSync('script', ['-qec', `${process.execPath} ${CTRCTL_MAIN} pull ${ref} 2>&1`, '/dev/null'], {
      env: engine.env,
      encoding: 'utf8',
    });
    expect(out).toContain('\x1b[2K');
    expect(out).toMatch(/Pull complete/);
    expect(out.trim().split('\n').at(-1)?.trim()).toBe(ref);
  });

  it('images, image inspect and tag show what docker shows', async () => {
    const table = (await ctrctl(['images'])).stdout.trim().split('\n');
    expect(table[0]).toMatch(/^REPOSITORY\s+TAG\s+IMAGE ID\s+CREATED\s+SIZE$/);
    expect(table[1]).toMatch(
      new RegExp(`^${registry.host}/app\\s+1\\s+${short(app.configDigest)}\\s+\\d+ \\w+ ago\\s+[\\d.]+[kM]B$`),
    );
    expect((await ctrctl(['images', '-q'])).stdout).toBe(`${short(app.configDigest)}\n`);
    const json = JSON.parse((await ctrctl(['images', '--format', 'json'])).stdout);
    expect(json).toMatchObject({ Repository: `${registry.host}/app`, Tag: '1', ID: short(app.configDigest) });

    expect((await ctrctl(['tag', ref, 'mine/app:2'])).code).toBe(0);
    const inspect = JSON.parse((await ctrctl(['image', 'inspect', 'mine/app:2'])).stdout);
    expect(inspect).toHaveLength(1);
    expect(inspect[0]).toMatchObject({
      Id: app.configDigest,
      RepoTags: expect.arrayContaining([`${registry.host}/app:1`, 'mine/app:2']),
      Architecture: 'amd64',
      Os: 'linux',
      RootFS: { Type: 'layers', Layers: app.diffIds },
      Config: { Cmd: ['sh'] },
    });
    expect((await ctrctl(['image', 'inspect', '--format', '{{.Id}}', short(app.configDigest)])).stdout).toBe(
      `${app.configDigest}\n`,
    );
    const rmi = await ctrctl(['rmi', 'mine/app:2']);
    expect(rmi.stdout).toBe('Untagged: mine/app:2\n');
  });

  it('save, rmi, load and import round-trip through files', async () => {
    const file = join(engine.dir, 'app.tar');
    expect((await ctrctl(['save', '-o', file, ref])).code).toBe(0);
    const rmi = await ctrctl(['rmi', ref]);
    expect(rmi.stdout.split('\n')[0]).toBe(`Untagged: ${ref}`);
    expect(rmi.stdout).toContain(`Deleted: ${app.configDigest}`);
    expect((await ctrctl(['images', '-q'])).stdout).toBe('');
    expect((await ctrctl(['load', '-i', file])).stdout).toBe(`Loaded image: ${ref}\n`);
    expect((await ctrctl(['image', 'inspect', '--format', '{{.Id}}', ref])).stdout).toBe(`${app.configDigest}\n`);

    const rootfs = join(engine.dir, 'rootfs.tar.gz');
    await writeFile(rootfs, gzipSync(await tarLayer(join(engine.dir, 'rootfs'))));
    const imp = await ctrctl(['import', rootfs, 'imported:1']);
    expect(imp.code).toBe(0);
    expect(imp.stdout).toMatch(/^sha256:[a-f0-9]{64}\n$/);
    const df = (await ctrctl(['system', 'df'])).stdout.split('\n');
    expect(df[0]).toMatch(/^TYPE\s+TOTAL\s+ACTIVE\s+SIZE\s+RECLAIMABLE$/);
    expect(df[1]).toMatch(/^Images\s+2\s+0\s+[\d.]+MB\s+[\d.]+MB \(100%\)$/);
  });

  it('push, login and logout', async () => {
    const target = `${authRegistry.host}/team/app:2`;
    await ctrctl(['tag', ref, target]);
    const denied = await ctrctl(['push', target]);
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/^Error: push access denied for .*team\/app: authentication required\n$/);
    const bad = await ctrctl(['login', '-u', creds.username, '--password-stdin', authRegistry.host], 'nope\n');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toBe(`Error: ${authRegistry.host}: incorrect username or password\n`);
    const ok = await ctrctl(
      ['login', '-u', creds.username, '--password-stdin', authRegistry.host],
      `${creds.password}\n`,
    );
    expect(ok.stdout).toBe('Login Succeeded\n');
    const pushed = await ctrctl(['push', target]);
    expect(pushed.code).toBe(0);
    expect(pushed.stdout.split('\n')[0]).toBe(`The push refers to repository [${authRegistry.host}/team/app]`);
    expect(pushed.stdout).toMatch(new RegExp(`${short(app.layerDigests[0])}: Pushed`));
    expect(pushed.stdout.trim().split('\n').at(-1)).toBe(
      `2: digest: ${app.manifestDigest} size: ${statSync(join(app.dir, 'blobs/sha256', app.manifestDigest.slice(7))).size}`,
    );
    expect((await ctrctl(['logout', authRegistry.host])).stdout).toBe(
      `Removing login credentials for ${authRegistry.host}\n`,
    );
  });

  it('bad input: one line on stderr and exit 1, nothing changed', async () => {
    const closed = await freePort();
    const cases: [string[], RegExp][] = [
      [['pull', 'Foo/Bar'], /^Error: invalid reference format: repository name \(\w+\) must be lowercase\n$/],
      [
        ['pull', `127.0.0.1:${closed}/x:1`],
        new RegExp(`^Error: 127\\.0\\.0\\.1:${closed}: connect ECONNREFUSED .*\\n$`),
      ],
      [['pull', `${registry.host}/app:nope`], /^Error: manifest for .*app:nope not found: manifest unknown/],
      [['rmi', 'nope'], /^Error: No such image: nope\n$/],
      [['image', 'inspect', 'nope'], /^Error: No such image: nope\n$/],
      [['load', '-i', '/nonexistent/x.tar'], /^Error: cannot read \/nonexistent\/x\.tar: no such file or directory\n$/],
    ];
    const before = (await ctrctl(['images', '--format', '{{.ID}}'])).stdout;
    for (const [args, pattern] of cases) {
      const r = await ctrctl(args);
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr, args.join(' ')).toMatch(pattern);
    }
    expect((await ctrctl(['images', '--format', '{{.ID}}'])).stdout).toBe(before);
    const pruned = await ctrctl(['image', 'prune', '-a', '-f']);
    expect(pruned.stdout).toMatch(/Total reclaimed space: [\d.]+MB\n$/);
    expect((await ctrctl(['images', '-q'])).stdout).toBe('');
  });
});
