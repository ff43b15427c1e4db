/**
 * The container lifecycle through ctrctl only, as a docker user types it,
 * against an isolated engine and a real registry holding a skopeo-pushed
 * busybox image: run, ports, exec, logs, stop, rm, inspect, wait, volumes,
 * limits, restart policies, a real pseudo-terminal, and a kill -9 of
 * container-service while containers run and exit.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import {
  alive,
  CTRCTL_MAIN,
  type EngineAndRegistry,
  exitGate,
  freePort,
  okCtrctl,
  sleep,
  startEngineAndRegistry,
  type TestEngine,
  waitFor,
} from '@ctr/testkit';
import { SnapshotsService } from '@ctr/api/snapshots/v1/snapshots';
import { readStream } from '@ctr/common/grpc-client';
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

const ctrctl = (args: string[], input?: string) => engine.ctrctl(args, { input });
const ok = (args: string[]) => okCtrctl(engine)(args);
const inspect = (ref: string, format: string) => ok(['inspect', '-f', format, ref]);
const entries = (dir: string) => readdir(dir).catch(() => [] as string[]);
/** The shims of containers (not the warm ones, started ahead and hosting nothing). */
const containerShims = async () => (await entries(join(engine.state, 'shims'))).filter((n) => !n.startsWith('warm-'));
/** Warm shims that are up (their pid file is written once they answer). */
const warmShims = async () =>
  (await entries(join(engine.state, 'shims'))).filter(
    (n) => n.startsWith('warm-') && existsSync(join(engine.state, 'shims', n, 'shim.pid')),
  );
const shimPid = async (name: string) => Number(await readFile(join(engine.state, 'shims', name, 'shim.pid'), 'utf8'));

describe('ctrctl container commands', () => {
  it('run --rm prints the output, pulls first, and leaves nothing', async () => {
    const r = await ctrctl(['run', '--rm', image, 'echo', 'hi']);
    expect(r).toMatchObject({ stdout: 'hi\n', code: 0 });
    expect(r.stderr).toContain(`Unable to find image '${image}' locally`);
    expect(await ok(['ps', '-aq'])).toBe('');
    expect(await entries(join(engine.root, 'containers'))).toEqual([]);
    expect(await containerShims()).toEqual([]);
    expect(await entries(join(engine.state, 'netns'))).toEqual([]);
    // The lifecycle as events, in order, with docker's action names.
    const events = await waitFor(async () => {
      const e = await engine.pastEvents(['type=container']);
      return e.some((x) => x.Action === 'destroy') ? e : undefined;
    }, 'the destroy event');
    const actions = events.map((e) => e.Action).filter((a) => ['create', 'start', 'die', 'destroy'].includes(a));
    expect(actions).toEqual(['create', 'start', 'die', 'destroy']);
    expect(new Set(events.map((e) => e.Actor.ID)).size).toBe(1);
  });

  it('mounts a --rm layer volatile; restart keeps a --rm container (and its files), its stop removes it', async () => {
    const root = ['sh', '-c', 'grep " / / " /proc/self/mountinfo'];
    expect(await ok(['run', '--rm', image, ...root])).toContain('fsync=volatile');
    const kept = await ok(['run', '--name', 'kept', image, ...root]);
    expect(kept).toContain('overlay');
    expect(kept).not.toContain('volatile');
    await ok(['rm', 'kept']);

    const id = await ok(['run', '-d', '--rm', image, 'sh', '-c', 'echo kept > /f; exec sleep 600']);
    await waitFor(async () => (await ctrctl(['exec', id, 'cat', '/f'])).stdout === 'kept\n', 'the file');
    await ok(['restart', '-t', '0', id]);
    expect(await inspect(id, '{{.State.Status}}')).toBe('running');
    // The same layer mounted again (overlayfs refuses a volatile one's work dir until it is cleared).
    expect(await ok(['exec', id, 'cat', '/f'])).toBe('kept');
    await ok(['stop', '-t', '0', id]);
    await waitFor(async () => (await ok(['ps', '-aq'])) === '', 'the --rm container to go');
  });

  it('passes exit codes on: the command, 127 for a missing one, 125 for an engine error', async () => {
    expect((await ctrctl(['run', '--rm', image, 'sh', '-c', 'exit 7'])).code).toBe(7);
    // --init: a reaper is PID 1 and passes the code on.
    const init = await ctrctl(['run', '--rm', '--init', image, 'sh', '-c', 'ps -o pid,args | grep -w 1; exit 6']);
    expect(init.code).toBe(6);
    expect(init.stdout).toContain('/sbin/docker-init -- sh -c');
    const missing = await ctrctl(['run', '--rm', image, 'nosuch']);
    expect(missing.code).toBe(127);
    expect(missing.stderr.trim()).toBe('Error: exec: "nosuch": executable file not found in $PATH');
    const bad = await ctrctl(['run', '--rm', '-p', 'x:y', image, 'true']);
    expect(bad.code).toBe(125);
    expect((await ctrctl(['run', '--rm', '--restart', 'always', image, 'true'])).code).toBe(125);
    const noImage = await ctrctl(['run', '--rm', '--pull', 'never', `${fx.registry.host}/nope:1`, 'true']);
    expect(noImage.code).toBe(125);
    expect(noImage.stderr).toContain('No such image');
    // Without --rm too, attached or detached (created and started in one call): the container goes.
    expect((await ctrctl(['run', image, 'nosuch'])).code).toBe(127);
    const detached = await ctrctl(['run', '-d', image, 'nosuch']);
    expect(detached).toMatchObject({ code: 127, stdout: '' });
    // A user the image does not have: refused by the start of run (its layer prepared meanwhile), and by create.
    for (const args of [['run', '--rm'], ['run', '-d'], ['create']]) {
      const r = await ctrctl([...args, '--user', 'nosuch', image, 'true']);
      expect(r).toMatchObject({ code: 125, stdout: '' });
      expect(r.stderr.trim()).toBe('Error: unable to find user nosuch: no matching entries in passwd file');
    }
    // A failed run leaves no container behind, nor its layer, bundle or namespace.
    expect(await ok(['ps', '-aq'])).toBe('');
    expect(await entries(join(engine.root, 'containers'))).toEqual([]);
    expect(await entries(join(engine.state, 'bundles'))).toEqual([]);
    expect(await entries(join(engine.state, 'netns'))).toEqual([]);
    const active: string[] = [];
    const snapshots = engine.client(SnapshotsService, 'snapshotter');
    for await (const page of readStream(snapshots.list({ filters: ['kind==active'] })))
      for (const i of page.info) active.push(i.name);
    expect(active).toEqual([]);
  });

  it('run -d -p 127.0.0.1:PORT:80 serves on that port; exec, logs, inspect, port, top, stop, rm', async () => {
    const port = await freePort();
    const www = join(engine.dir, 'www');
    await mkdir(www, { recursive: true });
    await writeFile(join(www, 'index.html'), 'hello from ctr\n');
    const id = await ok([
      'run',
      '-d',
      '--name',
      'web',
      '-p',
      `127.0.0.1:${port}:80`,
      '-v',
      `${www}:/www:ro`,
      image,
      'sh',
      '-c',
      'echo started; echo oops >&2; exec httpd -f -p 80 -h /www',
    ]);
    expect(id).toMatch(/^[0-9a-f]{64}$/);
    const body = await waitFor(async () => {
      const r = await fetch(`http://127.0.0.1:${port}/index.html`).catch(() => undefined);
      return r?.ok ? r.text() : undefined;
    }, 'httpd to answer');
    expect(body).toBe('hello from ctr\n');
    const ps = await ok(['ps']);
    expect(ps.split('\n')[0]).toMatch(/^CONTAINER ID\s+IMAGE\s+COMMAND\s+CREATED\s+STATUS\s+PORTS\s+NAMES$/);
    expect(ps).toContain(`127.0.0.1:${port}->80/tcp`);
    expect(ps).toMatch(/Up .* web$/m);

    const exec = await ctrctl(['exec', 'web', 'sh', '-c', 'cat /www/index.html; echo err >&2; exit 3']);
    expect(exec).toMatchObject({ code: 3, stdout: 'hello from ctr\n', stderr: 'err\n' });
    expect((await ctrctl(['exec', 'web', 'nosuch'])).code).toBe(127);
    expect((await ctrctl(['exec', '-u', 'nobody', 'web', 'id', '-u'])).stdout.trim()).toBe('65534');

    const logs = await ctrctl(['logs', 'web']);
    expect(logs).toMatchObject({ stdout: 'started\n', stderr: 'oops\n' });
    expect((await ctrctl(['logs', '-t', '--tail', '1', 'web'])).stdout).toBe('');
    expect((await ctrctl(['logs', '-t', 'web'])).stdout).toMatch(/^\d{4}-\d\d-\d\dT[\d:.]+Z started\n$/);

    expect(await inspect('web', '{{.State.Status}} {{.State.Running}} {{.Name}} {{.Id}}')).toBe(
      `running true /web ${id}`,
    );
    expect(Number(await inspect('web', '{{.State.Pid}}'))).toBeGreaterThan(1);
    expect(await inspect('web', '{{.NetworkSettings.IPAddress}}')).toMatch(/^100\.\d+\.\d+\.\d+$/);
    expect(await inspect('web', '{{json .NetworkSettings.Ports}}')).toBe(
      `{"80/tcp":[{"HostIp":"127.0.0.1","HostPort":"${port}"}]}`,
    );
    const json = JSON.parse(await ok(['inspect', 'web']));
    expect(json[0].Mounts[0]).toMatchObject({ Type: 'bind', Source: www, Destination: '/www', RW: false });
    expect(await ok(['port', 'web'])).toBe(`80/tcp -> 127.0.0.1:${port}`);
    expect(await ok(['top', 'web'])).toContain('httpd -f -p 80 -h /www');

    const rm = await ctrctl(['rm', 'web']);
    expect(rm.code).toBe(1);
    expect(rm.stderr).toContain('container is running: stop the container before removing or force remove');
    expect(await ok(['stop', '-t', '1', 'web'])).toBe('web');
    expect(await inspect('web', '{{.State.Status}} {{.State.ExitCode}}')).toBe('exited 137');
    expect(await ok(['ps', '-a', '--filter', 'status=exited', '--format', '{{.Names}}'])).toBe('web');
    expect(
      await fetch(`http://127.0.0.1:${port}/`).then(
        () => 'answered',
        () => 'refused',
      ),
    ).toBe('refused');
    // Started again, it serves again.
    await ok(['start', 'web']);
    await waitFor(
      async () => (await fetch(`http://127.0.0.1:${port}/index.html`).catch(() => undefined))?.ok,
      'httpd again',
    );
    expect(await ok(['rm', '-f', 'web'])).toBe('web');
    const gone = await ctrctl(['inspect', 'web']);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toContain('No such object: web');
  });

  it('start -a of a running container attaches to it, as docker does: its output from then on, and its code', async () => {
    const id = await ok(['run', '-d', image, 'sh', '-c', 'sleep 0.5; echo late; exit 4']);
    const r = await ctrctl(['start', '-a', id]);
    expect(r).toMatchObject({ stdout: 'late\n', code: 4 });
    await ok(['rm', id]);
  });

  it('logs -f follows until the container exits; wait prints the exit code', async () => {
    const id = await ok(['run', '-d', image, 'sh', '-c', 'for i in 1 2 3; do echo line$i; sleep 0.2; done; exit 5']);
    const follow = await ctrctl(['logs', '-f', id]);
    expect(follow.stdout).toBe('line1\nline2\nline3\n');
    expect(await ok(['wait', id])).toBe('5');
    expect(await inspect(id, '{{.State.ExitCode}}')).toBe('5');
    await ok(['rm', id]);
  });

  it('two containers on a user network reach each other by name', async () => {
    await ok(['network', 'create', '--subnet', engine.userSubnet(0), 'app']);
    await ok(['run', '-d', '--name', 'db', '--network', 'app', image, 'sleep', '600']);
    const ping = await ctrctl(['run', '--rm', '--network', 'app', image, 'ping', '-c', '1', '-W', '2', 'db']);
    expect(ping.code).toBe(0);
    expect(ping.stdout).toContain(`PING db (${await inspect('db', '{{.NetworkSettings.Networks.app.IPAddress}}')})`);
    const busy = await ctrctl(['network', 'rm', 'app']);
    expect(busy.code).toBe(1);
    await ok(['rm', '-f', 'db']);
    await ok(['network', 'rm', 'app']);
  });

  it('a named volume keeps its data across two containers', async () => {
    expect(await ok(['volume', 'create', 'data'])).toBe('data');
    await ok(['run', '--rm', '-v', 'data:/data', image, 'sh', '-c', 'echo kept > /data/file']);
    expect(await ok(['run', '--rm', '-v', 'data:/data', image, 'cat', '/data/file'])).toBe('kept');
    expect(await ok(['volume', 'ls', '-q'])).toContain('data');
    const id = await ok(['create', '-v', 'data:/data', image, 'true']);
    const busy = await ctrctl(['volume', 'rm', 'data']);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toContain('volume is in use');
    await ok(['rm', id]);
    expect(await ok(['volume', 'rm', 'data'])).toBe('data');
  });

  it('--memory: the OOM killer ends the container and inspect says OOMKilled', async () => {
    const id = await ok([
      'run',
      '-d',
      '--memory',
      '16m',
      '--memory-swap',
      '16m',
      image,
      'sh',
      '-c',
      'x=$(head -c 64000000 /dev/zero | tr "\\0" a); echo never',
    ]);
    expect(await ok(['wait', id])).toBe('137');
    expect(await inspect(id, '{{.State.OOMKilled}} {{.HostConfig.Memory}}')).toBe(`true ${16 * 1024 * 1024}`);
    await ok(['rm', id]);
  });

  it('--restart on-failure:2 restarts twice, then stays exited', async () => {
    const id = await ok(['run', '-d', '--restart', 'on-failure:2', image, 'sh', '-c', 'echo run; exit 3']);
    await waitFor(
      async () => (await inspect(id, '{{.State.Status}} {{.RestartCount}}')) === 'exited 2',
      'two restarts',
      { timeoutMs: 15_000 },
    );
    await sleep(1000);
    expect(await inspect(id, '{{.State.Status}} {{.RestartCount}} {{.State.ExitCode}}')).toBe('exited 2 3');
    expect((await ok(['logs', id])).split('\n')).toEqual(['run', 'run', 'run']);
    await ok(['rm', id]);
  });

  it('cp copies both ways, running or stopped, with docker names, and never leaves the container', async () => {
    const host = join(engine.dir, 'cp');
    await mkdir(join(host, 'src', 'sub'), { recursive: true });
    await writeFile(join(host, 'src', 'a.txt'), 'alpha\n');
    await writeFile(join(host, 'src', 'sub', 'b.txt'), 'beta\n');
    await writeFile(join(host, 'one.txt'), 'one\n');
    await ok(['run', '-d', '--name', 'cpbox', '-v', 'cpvol:/vol', image, 'sleep', '1000']);
    const sh = (script: string) => ok(['exec', 'cpbox', 'sh', '-c', script]);
    await sh('ln -s / /tmp/escape; ln -s /etc/passwd /tmp/pw; mkdir /tmp/dir');

    // In: into a directory, a missing name (renamed), a directory's contents, and through the container's symlinks.
    const r = await ctrctl(['cp', join(host, 'one.txt'), 'cpbox:/tmp/dir']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/^Successfully copied \S+B to cpbox:\/tmp\/dir\n$/);
    await ok(['cp', join(host, 'one.txt'), 'cpbox:/tmp/renamed.txt']);
    await ok(['cp', join(host, 'src'), 'cpbox:/tmp/']);
    await ok(['cp', `${join(host, 'src')}/.`, 'cpbox:/tmp/contents']);
    expect(
      await sh('cat /tmp/dir/one.txt /tmp/renamed.txt /tmp/src/a.txt /tmp/src/sub/b.txt /tmp/contents/sub/b.txt'),
    ).toBe('one\none\nalpha\nbeta\nbeta');
    expect(await sh('stat -c %u:%g /tmp/src/a.txt')).toBe('0:0');
    const marker = `ctr-cp-escape-${process.pid}.txt`;
    await ok(['cp', join(host, 'one.txt'), `cpbox:/tmp/escape/${marker}`]);
    expect(await sh(`cat /${marker}`)).toBe('one'); // the container's root, not the host's
    expect(execFileSync('ls', ['/']).toString()).not.toContain(marker);

    // Out: a file, a directory to a new name, a symlink as itself or (-L) as the container's file, a tar on stdout.
    await ok(['cp', 'cpbox:/tmp/src', join(host, 'out')]);
    expect(execFileSync('cat', [join(host, 'out', 'a.txt'), join(host, 'out', 'sub', 'b.txt')]).toString()).toBe(
      'alpha\nbeta\n',
    );
    await ok(['cp', 'cpbox:/tmp/pw', join(host, 'pw-link')]);
    expect(
      execFileSync('readlink', [join(host, 'pw-link')])
        .toString()
        .trim(),
    ).toBe('/etc/passwd');
    await ok(['cp', '-L', 'cpbox:/tmp/pw', join(host, 'pw-file')]);
    expect(execFileSync('cat', [join(host, 'pw-file')]).toString()).toBe(`${await sh('cat /etc/passwd')}\n`);
    const tar = await ctrctl(['cp', 'cpbox:/tmp/src', '-']);
    expect(tar.code).toBe(0);
    expect(tar.stdout).toContain('src/sub/b.txt');

    // Errors: one line, exit 1.
    const missing = await ctrctl(['cp', 'cpbox:/nosuch', host]);
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim()).toBe('Error: Could not find the file /nosuch in container cpbox');
    const both = await ctrctl(['cp', 'cpbox:/a', 'cpbox:/b']);
    expect(both).toMatchObject({ code: 1, stderr: 'Error: copying between containers is not supported\n' });

    // A stopped container: its snapshot and its volume are mounted for the copy, and nothing stays mounted.
    await ok(['stop', '-t', '0', 'cpbox']);
    await ok(['cp', join(host, 'one.txt'), 'cpbox:/tmp/stopped.txt']);
    await ok(['cp', join(host, 'one.txt'), 'cpbox:/vol/in-volume.txt']);
    await ok(['cp', 'cpbox:/tmp/renamed.txt', join(host, 'from-stopped.txt')]);
    expect(execFileSync('cat', [join(host, 'from-stopped.txt')]).toString()).toBe('one\n');
    expect(await entries(join(engine.state, 'cp'))).toEqual([]);
    expect(execFileSync('cat', ['/proc/self/mountinfo']).toString()).not.toContain(join(engine.state, 'cp'));
    await ok(['start', 'cpbox']);
    expect(await sh('cat /tmp/stopped.txt /vol/in-volume.txt')).toBe('one\none');
    await ok(['rm', '-f', '-v', 'cpbox']);
    await ok(['volume', 'rm', 'cpvol']);
  });

  it('commit makes an image of the changes that runs; a running container is paused for it and resumed', async () => {
    await ok(['run', '--name', 'base', '-e', 'GREETING=hello', image, 'sh', '-c', 'echo committed > /hello.txt']);
    const id = await ok([
      'commit',
      '-a',
      'ctr tests',
      '-m',
      'a file',
      '-c',
      'CMD ["sh", "-c", "echo $GREETING; cat /hello.txt"]',
      'base',
      'committed:1',
    ]);
    expect(id).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(await ok(['run', '--rm', 'committed:1'])).toBe('hello\ncommitted');
    expect(await ok(['image', 'inspect', '-f', '{{.Id}} {{.Author}} {{.Comment}}', 'committed:1'])).toBe(
      `${id} ctr tests a file`,
    );
    const bad = await ctrctl(['commit', '-c', 'RUN rm -rf /', 'base', 'never:1']);
    expect(bad.code).toBe(1);
    expect(bad.stderr.trim()).toBe('Error: RUN is not a valid change command');
    expect(await ok(['images', '-q', 'never'])).toBe('');

    await ok(['run', '-d', '--name', 'live', image, 'sh', '-c', 'echo live > /live.txt; sleep 1000']);
    await waitFor(async () => (await ctrctl(['exec', 'live', 'cat', '/live.txt'])).stdout === 'live\n', 'the file');
    await ok(['commit', 'live', 'live:1']);
    expect(await inspect('live', '{{.State.Status}}')).toBe('running');
    expect(await ok(['run', '--rm', 'live:1', 'cat', '/live.txt'])).toBe('live');
    await ok(['rm', '-f', 'base', 'live']);
    await ok(['rmi', 'committed:1', 'live:1']);
  });

  it('-it runs through a real pseudo-terminal', async () => {
    // script(1) gives ctrctl a terminal (and the container one of its own); what is typed goes through it.
    const cmd = `${process.execPath} ${CTRCTL_MAIN} run --rm -i -t ${image} sh; echo rc=$?`;
    const out = execFileSync('bash', ['-c', `(printf 'tty; exit 4\\n'; sleep 3) | script -qec '${cmd}' /dev/null`], {
      env: engine.env,
      encoding: 'utf8',
      timeout: 30_000,
    });
    expect(out).toContain('/dev/pts/0');
    expect(out).toMatch(/rc=4/);
  });
});

describe('a shim that dies', () => {
  it('under a running container: the container is reported exited (255), its processes are ended and nothing is left', async () => {
    const id = await ok(['run', '-d', image, 'sleep', '600']);
    const pid = Number(await inspect(id, '{{.State.Pid}}'));
    process.kill(await shimPid(id), 'SIGKILL');
    await waitFor(async () => (await inspect(id, '{{.State.Status}}')) === 'exited', 'the exit');
    expect(await inspect(id, '{{.State.ExitCode}}:{{.State.Error}}')).toBe('255:the shim exited unexpectedly');
    // Gone, or a zombie waiting for whoever inherited it.
    const ended = async () => !/^\d+ \(.*\) [^Z]/.test(await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => ''));
    await waitFor(ended, "the container's orphaned process to be ended");
    await ok(['rm', id]);
    expect(await containerShims()).toEqual([]);
  });
});

describe('warm shims', () => {
  it('a warm shim that dies leaves the pool: the next run does not take it, and another is started', async () => {
    await waitFor(async () => (await warmShims()).length === 1, 'a warm shim');
    const [spare] = await warmShims();
    process.kill(await shimPid(spare), 'SIGKILL');
    await waitFor(async () => !existsSync(join(engine.state, 'shims', spare)), 'the dead spare to be cleared');
    const id = await ok(['run', '-d', image, 'sleep', '600']);
    expect(await inspect(id, '{{.State.Status}}')).toBe('running');
    await waitFor(async () => (await warmShims()).length === 1, 'a new warm shim');
    expect(await warmShims()).not.toContain(spare);
    await ok(['rm', '-f', id]);
  }, 60_000);
});

describe('snapshots of creates cut short', () => {
  it("one a dead service had asked for, made only after its successor's first sweep, is swept soon after", async () => {
    await engine.crashService('container-service');
    // As a prepare still in flight when its caller died: labelled for a container nobody records.
    const owner = randomBytes(32).toString('hex');
    const snapshots = engine.client(SnapshotsService, 'snapshotter');
    await snapshots.prepare({ key: `orphan-${owner}`, parent: '', labels: { 'ctr.container': owner } });
    const keys = async () => {
      const out: string[] = [];
      for await (const page of readStream(snapshots.list({ filters: [] }))) for (const s of page.info) out.push(s.name);
      return out;
    };
    expect(await keys()).toContain(`orphan-${owner}`);
    await waitFor(async () => !(await keys()).includes(`orphan-${owner}`), 'the orphan to be swept', {
      timeoutMs: 10_000,
    });
  }, 60_000);
});

describe('container-service restarts', () => {
  it('a --rm container that had exited, its removal cut short by a crash, is removed as the service starts', async () => {
    const id = await ok(['create', '--rm', image, 'true']);
    await engine.crashService('container-service', {
      whileDown: async () => {
        // What a crash between the exit's record and the removal leaves: the container exited, still there.
        const db = new DatabaseSync(join(engine.root, 'containers.db'));
        const row = db.prepare('SELECT data FROM containers WHERE id = ?').get(id) as { data: string };
        const rec = JSON.parse(row.data);
        rec.container.state = { ...rec.container.state, status: 'exited', exitCode: 0 };
        db.prepare('UPDATE containers SET data = ? WHERE id = ?').run(JSON.stringify(rec), id);
        db.close();
      },
    });
    await waitFor(async () => (await ctrctl(['inspect', id])).code === 1, 'the --rm container to go');
    expect(await entries(join(engine.root, 'containers'))).not.toContain(id);
    const snapshots = engine.client(SnapshotsService, 'snapshotter');
    const keys: string[] = [];
    for await (const page of readStream(snapshots.list({ filters: [] }))) keys.push(...page.info.map((i) => i.name));
    expect(keys).not.toContain(id);
  });

  it('killed with SIGKILL while 10 containers run: they keep running, exits during the outage keep their codes and --rm', async () => {
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) ids.push(await ok(['run', '-d', '--name', `long${i}`, image, 'sleep', '600']));
    const pids = await Promise.all(ids.map((id) => inspect(id, '{{.State.Pid}}')));
    // Two that end while the service is down: one keeps its code, one is --rm.
    const gate = await exitGate(join(engine.dir, 'gate'));
    const coded = await ok(['run', '-d', '-v', gate.volume, image, ...gate.command(42)]);
    const removed = await ok(['run', '-d', '--rm', '-v', gate.volume, image, ...gate.command(0)]);

    // One shim waits ready for the next start; it is the service's alone.
    await waitFor(async () => (await warmShims()).length === 1, 'a warm shim');
    const [spare] = await warmShims();
    const sparePid = await shimPid(spare);

    // And one whose shim dies too, after the exit: the code comes from the exit record the shim wrote.
    const orphaned = await ok(['run', '-d', '-v', gate.volume, image, ...gate.command(9)]);

    const exitRecord = join(engine.state, 'shims', orphaned, `${orphaned}.exit.json`);
    await engine.crashService('container-service', {
      whileDown: async () => {
        await gate.open();
        await waitFor(() => existsSync(exitRecord), 'the exit record');
        process.kill(await shimPid(orphaned), 'SIGKILL');
      },
    });

    for (const [i, id] of ids.entries()) {
      expect(await inspect(id, '{{.State.Status}} {{.State.Pid}}')).toBe(`running ${pids[i]}`);
      process.kill(Number(pids[i]), 0);
    }
    const running = (await ok(['ps', '--filter', 'name=long', '--format', '{{.Names}}'])).split('\n').sort();
    expect(running).toEqual(ids.map((_, i) => `long${i}`).sort());
    await waitFor(async () => (await inspect(coded, '{{.State.Status}}')) === 'exited', 'the coded exit');
    expect(await inspect(coded, '{{.State.ExitCode}}')).toBe('42');
    await waitFor(async () => (await inspect(orphaned, '{{.State.Status}}')) === 'exited', 'the orphaned exit');
    expect(await inspect(orphaned, '{{.State.ExitCode}}:{{.State.Error}}')).toBe('9:');
    await waitFor(async () => (await ctrctl(['inspect', removed])).code === 1, 'the --rm container to go');
    // And the service still drives them.
    expect(await ok(['exec', 'long0', 'echo', 'alive'])).toBe('alive');
    // The dead service's warm shim ended with it; the new service has its own, which the next run takes.
    await waitFor(() => !alive(sparePid), 'the old warm shim to end');
    await waitFor(async () => (await warmShims()).length === 1 && (await warmShims())[0] !== spare, 'a new warm shim');
    const [fresh] = await warmShims();
    const freshPid = await shimPid(fresh);
    const taker = await ok(['run', '-d', image, 'sleep', '600']);
    expect(await shimPid(taker)).toBe(freshPid);
    expect(await warmShims()).not.toContain(fresh);
    await ok(['rm', '-f', taker]);
    await waitFor(() => !alive(freshPid), 'the taken shim to end with its container');
    await ok(['rm', '-f', ...ids, coded, orphaned]);
    expect(await ok(['ps', '-aq'])).toBe('');
  }, 120_000);
});
