/**
 * User journeys through ctrctl only, against an engine started from the
 * built apps (its own root, state, instance and NATS) and a real registry
 * holding a skopeo-pushed busybox: a web site with a published port, a
 * volume and cp; two containers talking by name; limits and restart
 * policies; the lifecycle in `ctrctl events`; save/load; commit; and
 * `system prune` leaving what is in use.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  type EngineAndRegistry,
  freePort,
  okCtrctl,
  sleep,
  startEngineAndRegistry,
  type TestEngine,
  waitFor,
} from '@ctr/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

let fx: EngineAndRegistry;
let engine: TestEngine;
let image: string;

beforeAll(async () => {
  fx = await startEngineAndRegistry();
  ({ engine, image } = fx);
}, 120_000);

afterAll(async () => {
  await fx?.stop();
});

const ctrctl = (args: string[]) => engine.ctrctl(args);
const ok = (args: string[]) => okCtrctl(engine)(args);
const get = async (url: string) => {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return `${res.status} ${await res.text()}`;
  } catch {
    return 'unreachable';
  }
};

describe('journeys', () => {
  it('pulls, serves a site on a published port from a volume, and the volume outlives the container', async () => {
    const pull = await ctrctl(['pull', image]);
    expect(pull.code).toBe(0);
    expect(pull.stdout).toContain(`Status: Downloaded newer image for ${image}`);
    expect(await ok(['images', '--format', '{{.Repository}}:{{.Tag}}'])).toContain(image);

    const port = await freePort();
    await ok([
      'run',
      '-d',
      '--name',
      'web',
      '-p',
      `127.0.0.1:${port}:80`,
      '-v',
      'site:/www',
      image,
      'httpd',
      '-f',
      '-v',
      '-h',
      '/www',
    ]);
    const page = join(engine.dir, 'index.html');
    await writeFile(page, 'hello from a volume\n');
    await ok(['cp', page, 'web:/www/index.html']);
    expect(
      await waitFor(
        async () =>
          (await get(`http://127.0.0.1:${port}/`)).startsWith('200') ? get(`http://127.0.0.1:${port}/`) : undefined,
        'the site',
      ),
    ).toBe('200 hello from a volume\n');
    expect(await ok(['exec', 'web', 'cat', '/www/index.html'])).toBe('hello from a volume');
    expect(await ok(['port', 'web'])).toBe(`80/tcp -> 127.0.0.1:${port}`);
    await ok(['stop', 'web']);
    expect(await get(`http://127.0.0.1:${port}/`)).toBe('unreachable');
    await ok(['rm', 'web']);
    expect(await ok(['run', '--rm', '-v', 'site:/www', image, 'cat', '/www/index.html'])).toBe('hello from a volume');
    await ok(['volume', 'rm', 'site']);
  });

  it('runs two containers on a user network that reach each other by name', async () => {
    await ok(['network', 'create', '--subnet', engine.userSubnet(1), 'app']);
    await ok(['run', '-d', '--name', 'db', '--network', 'app', image, 'httpd', '-f', '-p', '5432']);
    const ip = await ok(['inspect', '-f', '{{.NetworkSettings.Networks.app.IPAddress}}', 'db']);
    const r = await ctrctl(['run', '--rm', '--network', 'app', image, 'ping', '-c', '1', '-W', '2', 'db']);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`(${ip})`);
    await ok(['rm', '-f', 'db']);
    await ok(['network', 'rm', 'app']);
  });

  it('applies limits, and a restart policy brings a dying container back until it is stopped', async () => {
    const fork = await ctrctl([
      'run',
      '--rm',
      '--pids-limit',
      '8',
      image,
      'sh',
      '-c',
      'for i in $(seq 20); do sleep 5 & done; wait',
    ]);
    expect(fork.code).not.toBe(0);
    expect(fork.stderr).toMatch(/can't fork/);
    expect(
      await ok(['run', '--rm', '--memory', '32m', image, 'cat', '/sys/fs/cgroup/memory/memory.limit_in_bytes']),
    ).toBe(String(32 << 20));

    const id = await ok(['run', '-d', '--restart', 'always', image, 'sh', '-c', 'sleep 0.2; exit 1']);
    await waitFor(async () => Number(await ok(['inspect', '-f', '{{.RestartCount}}', id])) >= 2, 'two restarts', {
      timeoutMs: 20_000,
    });
    await ok(['stop', id]);
    await sleep(1000);
    const [status, count] = (await ok(['inspect', '-f', '{{.State.Status}} {{.RestartCount}}', id])).split(' ');
    expect(status).toBe('exited');
    await sleep(1500);
    expect(await ok(['inspect', '-f', '{{.State.Status}} {{.RestartCount}}', id])).toBe(`exited ${count}`);
    await ok(['rm', id]);
  });

  it('shows a lifecycle in ctrctl events, in order', async () => {
    await ok(['run', '--name', 'evented', image, 'true']);
    await ok(['rm', 'evented']);
    const actions = await waitFor(async () => {
      const e = await engine.pastEvents(['container=evented']);
      const a = e.map((x) => x.Action);
      return a.includes('destroy') ? a : undefined;
    }, 'the destroy event');
    expect(actions.filter((a) => ['create', 'attach', 'start', 'die', 'destroy'].includes(a))).toEqual(
      expect.arrayContaining(['create', 'start', 'die', 'destroy']),
    );
    const order = ['create', 'start', 'die', 'destroy'].map((a) => actions.indexOf(a));
    expect([...order].sort((a, b) => a - b)).toEqual(order);
  });

  it('saves, removes and loads an image, and runs it again', async () => {
    const tar = join(engine.dir, 'busybox.tar');
    await ok(['save', '-o', tar, image]);
    await ok(['rmi', image]);
    expect(await ok(['images', '-q', image])).toBe('');
    expect(await ok(['load', '-i', tar])).toBe(`Loaded image: ${image}`);
    expect(await ok(['run', '--rm', '--pull', 'never', image, 'echo', 'loaded'])).toBe('loaded');
  });

  it('commits a container and runs the new image', async () => {
    await ok(['run', '--name', 'builder', image, 'sh', '-c', 'echo built > /artifact']);
    await ok(['commit', '-c', 'CMD ["cat", "/artifact"]', 'builder', 'artifact:1']);
    expect(await ok(['run', '--rm', 'artifact:1'])).toBe('built');
    await ok(['rm', 'builder']);
  });

  it('system prune removes stopped containers and unused networks, and keeps what is in use', async () => {
    await ok(['network', 'create', '--subnet', engine.userSubnet(2), 'unused']);
    const stopped = await ok(['create', image, 'true']);
    const running = await ok(['run', '-d', image, 'sleep', '100']);
    const r = await ok(['system', 'prune', '-f']);
    expect(r).toContain(`Deleted Containers:\n${stopped}`);
    expect(r).toContain('Deleted Networks:\nunused');
    expect(r).toMatch(/Total reclaimed space: \S+B$/);
    expect(await ok(['ps', '-q', '--no-trunc'])).toBe(running);
    expect(await ok(['images', '-q', image])).not.toBe('');
    await ok(['rm', '-f', running]);
  });
});
