/**
 * Restart survival: each daemon in turn (every service, nats-server, then
 * ctrd itself) is killed with SIGKILL while containers run. No container
 * stops (same pids, a published port keeps answering), every daemon comes
 * back, an exit that happens during container-service's outage keeps its
 * code, and work in flight (a pull, a run) either completes or fails
 * cleanly, and a retry completes.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  alive,
  buildBusyboxRootfs,
  buildOciLayout,
  CTRCTL_MAIN,
  freePort,
  okCtrctl,
  pushLayout,
  TestEngine,
  TestRegistry,
  waitFor,
} from '@ctr/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let engine: TestEngine;
let registry: TestRegistry;
let image: string;
let big: string;

beforeAll(async () => {
  const [e, r] = await Promise.allSettled([TestEngine.start(), TestRegistry.start()]);
  if (e.status === 'fulfilled') engine = e.value;
  if (r.status === 'fulfilled') registry = r.value;
  for (const x of [e, r]) if (x.status === 'rejected') throw x.reason;
  const rootfs = join(engine.dir, 'rootfs');
  await buildBusyboxRootfs(rootfs);
  // A second layer of 48 MB that does not compress: a pull of it is in flight long enough to be cut.
  const data = join(engine.dir, 'data');
  await mkdir(join(data, 'data'), { recursive: true });
  for (let i = 0; i < 3; i++) await writeFile(join(data, 'data', `blob${i}`), randomBytes(16 << 20));
  const small = await buildOciLayout(join(engine.dir, 'small'), [rootfs], { Cmd: ['sh'] }, '1');
  const large = await buildOciLayout(join(engine.dir, 'large'), [rootfs, data], { Cmd: ['sh'] }, '1');
  image = `${registry.host}/busybox:1`;
  big = `${registry.host}/big:1`;
  await pushLayout(small.dir, '1', image);
  await pushLayout(large.dir, '1', big);
}, 180_000);

afterAll(async () => {
  // The registry stops even when the engine's teardown fails its leak check.
  try {
    await engine?.stop();
  } finally {
    await registry?.stop();
  }
});

const ok = (args: string[]) => okCtrctl(engine)(args);
const answers = async (port: number) => {
  try {
    return (await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) })).status > 0;
  } catch {
    return false;
  }
};

/** ctrctl started in the background: its result once it ends. */
function background(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const child = spawn(process.execPath, [CTRCTL_MAIN, ...args], {
    env: engine.env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d) => (stderr += d));
  return new Promise((resolve) => child.on('exit', (code) => resolve({ code, stderr })));
}

describe('restart survival', () => {
  it('each daemon killed in turn: no container stops, every daemon comes back, no exit code is lost', async () => {
    const port = await freePort();
    const web = await ok(['run', '-d', '-p', `127.0.0.1:${port}:80`, image, 'httpd', '-f']);
    const others = [
      await ok(['run', '-d', image, 'sleep', '1000']),
      await ok(['run', '-d', '--init', image, 'sleep', '1000']),
    ];
    const running = [web, ...others];
    const pids = new Map<string, number>();
    for (const id of running) pids.set(id, Number(await ok(['inspect', '-f', '{{.State.Pid}}', id])));
    await waitFor(() => answers(port), 'the published port');

    const check = async (after: string) => {
      for (const id of running) {
        expect(alive(pids.get(id) as number), `${id} after ${after}`).toBe(true);
        expect(await ok(['inspect', '-f', '{{.State.Status}} {{.State.Pid}}', id])).toBe(`running ${pids.get(id)}`);
      }
      expect(await answers(port)).toBe(true);
      expect(await ok(['exec', web, 'echo', 'exec'])).toBe('exec');
      expect(await ok(['run', '--rm', image, 'echo', `after ${after}`])).toBe(`after ${after}`);
    };

    let exiter = '';
    for (const name of ['image-service', 'snapshotter', 'network-service', 'container-service', 'nats-server']) {
      if (name === 'container-service') exiter = await ok(['run', '-d', image, 'sh', '-c', 'sleep 1; exit 42']);
      const { before, after } = await engine.crashService(name, 20_000);
      expect(after.restarts).toBe(before.restarts + 1);
      await check(name);
    }
    expect(await ok(['wait', exiter])).toBe('42');
    expect(await ok(['inspect', '-f', '{{.State.ExitCode}}', exiter])).toBe('42');

    // ctrd itself: its services and the containers keep running; a new ctrd adopts them.
    const services = await engine.services();
    await engine.killCtrd();
    for (const s of services) expect(alive(s.pid), s.name).toBe(true);
    for (const id of running) expect(alive(pids.get(id) as number)).toBe(true);
    await engine.startCtrd();
    expect((await engine.services()).map((s) => `${s.name} ${s.pid}`).sort()).toEqual(
      services.map((s) => `${s.name} ${s.pid}`).sort(),
    );
    await check('ctrd');
    // Events kept flowing through the restarted nats-server.
    const destroyed = await waitFor(async () => {
      const e = await engine.pastEvents(['type=container', 'event=destroy'], '2m');
      return e.length >= 6 ? e : undefined;
    }, 'the destroy events of the runs');
    expect(destroyed.length).toBeGreaterThanOrEqual(6);
    for (const id of [...running, exiter]) await ok(['rm', '-f', id]);
  });

  it('a pull cut by an image-service crash completes, and a second pull finds it done', async () => {
    const pull = background(['pull', big]);
    await new Promise((r) => setTimeout(r, 150));
    await engine.crashService('image-service', 20_000);
    const first = await pull;
    // ctrctl asks again once image-service is back; the ingests resume.
    expect(first.code, first.stderr).toBe(0);
    const retry = await engine.ctrctl(['pull', big], { timeoutMs: 120_000 });
    expect(retry.code).toBe(0);
    expect((await ok(['images', '-q', big])).split('\n')).toHaveLength(1);
    expect(await ok(['run', '--rm', big, 'sh', '-c', 'cat /data/blob* | wc -c'])).toBe(String(48 << 20));
  });

  it('a run cut by a container-service crash runs or fails cleanly, and a retry runs', async () => {
    const run = background(['run', '-d', '--name', 'racer', image, 'sleep', '1000']);
    await new Promise((r) => setTimeout(r, 100));
    await engine.crashService('container-service', 20_000);
    const first = await run;
    expect([0, 1, 125]).toContain(first.code);
    const state = await engine.ctrctl(['inspect', '-f', '{{.State.Status}}', 'racer']);
    if (state.code === 0 && state.stdout.trim() !== 'running') await ok(['rm', '-f', 'racer']);
    if (state.code !== 0 || state.stdout.trim() !== 'running')
      await ok(['run', '-d', '--name', 'racer', image, 'sleep', '1000']);
    expect(await ok(['inspect', '-f', '{{.State.Status}}', 'racer'])).toBe('running');
    expect(await ok(['exec', 'racer', 'echo', 'ok'])).toBe('ok');
    await ok(['rm', '-f', 'racer']);
  });
});
