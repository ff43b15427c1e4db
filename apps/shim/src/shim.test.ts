/**
 * The shim as a real, detached process on the real kernel: containers from the
 * testkit's busybox rootfs, driven over the shim's socket the way
 * container-service drives them, events on a real nats-server.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { AttachResponse } from '@ctr/api/shim/v1/shim';
import { Status } from '@ctr/api/shim/v1/shim';
import { EventBus, type Envelope } from '@ctr/common/events';
import { defaultSpec, type Spec } from '@ctr/oci';
import { connectShim, type RunningShim, type ShimClient, startShim, stopTask, WARM_NICE } from '@ctr/shim-client';
import { childrenOf, readProcStat } from '@ctr/sys';
import { buildBusyboxRootfs, findLeaks, randomInstance, run, signal, TestNats, waitFor } from '@ctr/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const instance = randomInstance();
const dir = `/tmp/ctr-${instance}`;
const rootfs = join(dir, 'rootfs');
const engine = { root: join(dir, 'root'), state: join(dir, 'state'), instance, eventsUrl: '' };
let nats: TestNats;
let bus: EventBus;
let shim: RunningShim;
let client: ShimClient;
const events: Envelope[] = [];
const shims: Omit<RunningShim, 'exited'>[] = [];
/** Starter processes (startStarter) and the pids they reported: ended in afterAll, even when their test failed. */
const starters: { child: ChildProcess; pids: number[] }[] = [];

beforeAll(async () => {
  nats = await TestNats.start();
  engine.eventsUrl = nats.url;
  await buildBusyboxRootfs(rootfs);
  bus = await EventBus.connect({ url: nats.url, instance, source: 'test' });
  bus.subscribe({ topics: ['task.>'] }, (e) => {
    events.push(e);
  });
  shim = await startShim(engine, 'main');
  shims.push(shim);
  client = shim.client;
});

afterAll(async () => {
  for (const { child } of starters) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  for (const s of shims) {
    await s.client.shutdown({ id: '', now: true }).catch(() => undefined);
    await waitFor(() => !existsSync(`/proc/${s.pid}`), `shim ${s.id} to exit`).catch(() => signal(s.pid, 'SIGKILL'));
    s.client.close();
  }
  // What a starter started ends with it (a zygote, unbound shims) within a second or so; the leak check tells of the rest.
  for (const pid of starters.flatMap((s) => s.pids).filter((p) => p > 0)) {
    await waitFor(() => !existsSync(`/proc/${pid}`), `process ${pid} to end`).catch(() => undefined);
  }
  await bus?.close();
  await nats?.stop();
  await rm(dir, { recursive: true, force: true });
  expect(await findLeaks({ instance, dirs: [dir] })).toEqual([]);
});

let seq = 0;
/** A bundle whose config runs `script` under sh, sharing the busybox rootfs. */
async function bundle(script: string, patch: (s: Spec) => void = () => undefined) {
  const id = `c${++seq}`;
  const b = join(dir, 'bundles', id);
  await mkdir(b, { recursive: true });
  const spec = defaultSpec(rootfs, ['sh', '-c', script]);
  spec.hostname = id;
  patch(spec);
  await writeFile(join(b, 'config.json'), JSON.stringify(spec));
  return { id, bundle: b, log: join(dir, 'logs', `${id}.log`) };
}

async function runTask(
  script: string,
  opts: { patch?: (s: Spec) => void; terminal?: boolean; stdin?: boolean; runtime?: string; on?: ShimClient } = {},
) {
  const c = opts.on ?? client;
  const b = await bundle(script, opts.patch);
  const { pid } = await c.create({
    id: b.id,
    bundle: b.bundle,
    rootfs: [],
    terminal: opts.terminal ?? false,
    stdin: opts.stdin ?? false,
    log: { path: b.log, maxSize: 0n, maxFiles: 0, compress: false },
    cgroupParent: '',
    runtime: opts.runtime ?? '',
  });
  return { ...b, pid };
}

const logText = async (path: string) =>
  (await readFile(path, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l).log)
    .join('');

/** Adds an exec running `script`, attaches to it, starts it, and collects its output and exit. */
async function execScript(id: string, execId: string, script: string) {
  const spec = defaultSpec(rootfs, ['sh', '-c', script]).process;
  await client.exec({ id, execId, terminal: false, stdin: false, spec: Buffer.from(JSON.stringify(spec)) });
  const a = attach(id, execId);
  await client.start({ id, execId });
  return a.done;
}

/** Collects an attach stream until its exit message. */
function attach(
  id: string,
  execId = '',
  input?: (write: (s: string) => void, close: () => void) => void,
  on: ShimClient = client,
) {
  const stream = on.attach();
  stream.write({ part: { $case: 'start', value: { id, execId } } });
  let out = '';
  const done = new Promise<{ out: string; exit?: number }>((resolve, reject) => {
    stream.on('data', (m: AttachResponse) => {
      if (m.part?.$case === 'stdout' || m.part?.$case === 'stderr') out += m.part.value.toString();
      if (m.part?.$case === 'exit') resolve({ out, exit: m.part.value.exitStatus });
    });
    stream.on('error', reject);
    stream.on('end', () => resolve({ out }));
  });
  input?.(
    (s) => stream.write({ part: { $case: 'stdin', value: Buffer.from(s) } }),
    () => stream.write({ part: { $case: 'closeStdin', value: true } }),
  );
  return { done, output: () => out, stream };
}

describe('a task through the shim', () => {
  it('creates, starts, logs, waits and deletes, publishing each step', async () => {
    const t = await runTask('echo pid=$$ host=$(hostname); echo oops >&2; exit 3');
    expect((await client.state({ id: t.id, execId: '' })).status).toBe(Status.STATUS_CREATED);
    await client.start({ id: t.id, execId: '' });
    const exit = await client.wait({ id: t.id, execId: '' });
    expect(exit.exitStatus).toBe(3);
    const lines = (await readFile(t.log, 'utf8'))
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ log: `pid=1 host=${t.id}\n`, stream: 'stdout' }),
        expect.objectContaining({ log: 'oops\n', stream: 'stderr' }),
      ]),
    );
    expect(lines[0].time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z$/);
    const logs: string[] = [];
    for await (const l of client.logs({ id: t.id, follow: false, tail: 0n })) logs.push(l.line.toString());
    expect(logs.join('')).toContain('oops');
    const del = await client.delete({ id: t.id, execId: '' });
    expect(del.exitStatus).toBe(3);
    await waitFor(
      () => events.some((e) => e.topic === 'task.deleted' && e.event?.$case === 'taskDeleted'),
      'task.deleted',
    );
    const mine = events.filter((e) => JSON.stringify(e.event?.value).includes(`"${t.id}"`)).map((e) => e.topic);
    expect(mine).toEqual(['task.created', 'task.started', 'task.exited', 'task.deleted']);
    await expect(client.state({ id: t.id, execId: '' })).rejects.toThrow(/not found/);
  });

  it('starts the process in the attach call when asked (run): started first, then its output and exit', async () => {
    const t = await runTask('echo one; echo two >&2; exit 5');
    const stream = client.attach();
    stream.write({ part: { $case: 'start', value: { id: t.id, execId: '' } }, run: true });
    const parts: string[] = [];
    let pid = 0;
    await new Promise<void>((resolve, reject) => {
      stream.on('data', (m: AttachResponse) => {
        const p = m.part;
        if (p?.$case === 'started') {
          pid = p.value.pid;
          parts.push('started');
        } else if (p?.$case === 'stdout' || p?.$case === 'stderr') parts.push(p.value.toString());
        else if (p?.$case === 'exit') parts.push(`exit ${p.value.exitStatus}`);
      });
      stream.on('error', reject);
      stream.on('end', resolve);
    });
    expect(pid).toBe(t.pid);
    expect(parts[0]).toBe('started');
    expect(parts.slice(1).join('')).toMatch(/^(one\ntwo\n|two\none\n)exit 5$/);
    await client.delete({ id: t.id, execId: '' });

    // A command that cannot run fails the call, as Start would, and the task keeps docker's code.
    const bad = await runTask('true', { patch: (sp) => Object.assign(sp.process ?? {}, { args: ['nosuch'] }) });
    const failing = client.attach();
    failing.write({ part: { $case: 'start', value: { id: bad.id, execId: '' } }, run: true });
    const err = await new Promise<Error>((resolve) => {
      failing.on('data', () => undefined);
      failing.on('error', resolve);
      failing.on('end', () => resolve(new Error('ended without an error')));
    });
    expect(err.message).toContain('executable file not found');
    const st = await client.state({ id: bad.id, execId: '' });
    expect(st).toMatchObject({ status: Status.STATUS_STOPPED, exitStatus: 127 });
    await client.delete({ id: bad.id, execId: '' });
  });

  it('writes the exit status to disk before task.exited, and keeps it until delete', async () => {
    const t = await runTask('exit 42');
    const exitFile = join(engine.state, 'shims', 'main', `${t.id}.exit.json`);
    let onDiskAtEvent: string | undefined;
    const seen = new Promise<void>((resolve) => {
      const sub = bus.subscribe({ topics: ['task.exited'] }, async (e) => {
        if (e.event?.$case !== 'taskExited' || e.event.value.containerId !== t.id) return;
        onDiskAtEvent = await readFile(exitFile, 'utf8').catch(() => undefined);
        void sub.close();
        resolve();
      });
    });
    await new Promise((r) => setTimeout(r, 200));
    await client.start({ id: t.id, execId: '' });
    await seen;
    expect(JSON.parse(onDiskAtEvent ?? '{}')).toMatchObject({ exitStatus: 42, oomKilled: false });
    await client.delete({ id: t.id, execId: '' });
    expect(existsSync(exitFile)).toBe(false);
  });

  it('reports a missing command as docker does, and cleans up on delete', async () => {
    const t = await runTask('true', { patch: (s) => s.process && (s.process.args = ['no-such-command']) });
    await expect(client.start({ id: t.id, execId: '' })).rejects.toThrow(
      'exec: "no-such-command": executable file not found in $PATH',
    );
    expect((await client.wait({ id: t.id, execId: '' })).exitStatus).toBe(127);
    await client.delete({ id: t.id, execId: '' });
  });

  it('leaves nothing behind when create fails', async () => {
    const t = await bundle('true', (s) =>
      s.mounts?.push({ destination: '/x', type: 'bind', source: join(dir, 'missing'), options: ['rbind'] }),
    );
    await expect(
      client.create({
        id: t.id,
        bundle: t.bundle,
        rootfs: [],
        terminal: false,
        stdin: false,
        cgroupParent: '',
        runtime: '',
      }),
    ).rejects.toThrow(/mounts: bind source .*missing: no such file or directory/);
    await expect(client.state({ id: t.id, execId: '' })).rejects.toThrow(/not found/);
    expect(existsSync(`/sys/fs/cgroup/memory/ctr-${instance}/${t.id}`)).toBe(false);
  });

  it('runs the rootfs from an overlay mount it makes and removes', async () => {
    const b = await bundle('echo overlay > /written; cat /written');
    const layer = join(dir, 'overlay', b.id);
    for (const d of ['upper', 'work']) await mkdir(join(layer, d), { recursive: true });
    const spec = JSON.parse(await readFile(join(b.bundle, 'config.json'), 'utf8')) as Spec;
    spec.root = { path: 'rootfs' };
    await writeFile(join(b.bundle, 'config.json'), JSON.stringify(spec));
    await client.create({
      id: b.id,
      bundle: b.bundle,
      rootfs: [
        {
          type: 'overlay',
          source: 'overlay',
          target: '',
          options: [`lowerdir=${rootfs}`, `upperdir=${join(layer, 'upper')}`, `workdir=${join(layer, 'work')}`],
        },
      ],
      terminal: false,
      stdin: false,
      log: { path: b.log, maxSize: 0n, maxFiles: 0, compress: false },
      cgroupParent: '',
      runtime: '',
    });
    await client.start({ id: b.id, execId: '' });
    expect((await client.wait({ id: b.id, execId: '' })).exitStatus).toBe(0);
    expect(await logText(b.log)).toBe('overlay\n');
    expect(await readFile(join(layer, 'upper', 'written'), 'utf8')).toBe('overlay\n');
    expect(existsSync(join(rootfs, 'written'))).toBe(false);
    await client.delete({ id: b.id, execId: '' });
    expect((await readFile('/proc/self/mountinfo', 'utf8')).includes(join(b.bundle, 'rootfs'))).toBe(false);
  });
  it('maps ids in a user namespace when asked', async () => {
    const t = await runTask('echo uid=$(id -u) map=$(cat /proc/self/uid_map | tr -s " " ","); ls -ln /bin/busybox', {
      patch: (s) => {
        s.linux?.namespaces?.push({ type: 'user' });
        if (s.linux) {
          s.linux.uidMappings = [{ containerID: 0, hostID: 200000, size: 65536 }];
          s.linux.gidMappings = [{ containerID: 0, hostID: 200000, size: 65536 }];
        }
      },
    });
    await client.start({ id: t.id, execId: '' });
    expect((await client.wait({ id: t.id, execId: '' })).exitStatus).toBe(0);
    const out = await logText(t.log);
    expect(out).toContain('uid=0 map=,0,200000,65536');
    // The image's files belong to host root, outside the map: nobody inside.
    expect(out).toMatch(/65534\s+65534/);
    await client.delete({ id: t.id, execId: '' });
  });
});

describe('processes of a running task', () => {
  it('execs into the same pid namespace, with its own output and exit', async () => {
    const t = await runTask('echo started; sleep 30');
    await client.start({ id: t.id, execId: '' });
    const r = await execScript(t.id, 'e1', 'echo pid1=$(cat /proc/1/cmdline | tr "\\0" " "); exit 5');
    expect(r.out).toContain('pid1=sleep 30');
    expect(r.exit).toBe(5);
    expect((await client.wait({ id: t.id, execId: 'e1' })).exitStatus).toBe(5);
    await client.delete({ id: t.id, execId: 'e1' });
    const pids = (await client.pids({ id: t.id })).pids;
    expect(pids).toContain(t.pid);
    const exit = await stopTask(client, t.id, { timeoutMs: 5000 });
    expect(exit.exitStatus).toBe(137);
    await client.delete({ id: t.id, execId: '' });
  });

  it('stop sends the stop signal, then SIGKILL after the timeout', async () => {
    // pid 1 gets only the signals it handles: this one handles TERM and carries on.
    const stubborn = await runTask("trap 'echo got TERM' TERM; while true; do sleep 0.1; done");
    await client.start({ id: stubborn.id, execId: '' });
    await new Promise((r) => setTimeout(r, 300));
    const started = Date.now();
    const exit = await stopTask(client, stubborn.id, { signal: 15, timeoutMs: 1000 });
    expect(exit.exitStatus).toBe(137);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1000);
    expect(await logText(stubborn.log)).toContain('got TERM');
    await client.delete({ id: stubborn.id, execId: '' });

    const polite = await runTask("trap 'exit 0' TERM; while true; do sleep 0.1; done");
    await client.start({ id: polite.id, execId: '' });
    await new Promise((r) => setTimeout(r, 300));
    expect((await stopTask(client, polite.id, { timeoutMs: 10_000 })).exitStatus).toBe(0);
    await client.delete({ id: polite.id, execId: '' });
  });

  it('attaches stdin and stdout', async () => {
    const t = await runTask('read line; echo "you said $line"; cat', { stdin: true });
    const a = attach(t.id, '', (write, close) => {
      write('hello\n');
      write('more\n');
      close();
    });
    await client.start({ id: t.id, execId: '' });
    const r = await a.done;
    expect(r.out).toBe('you said hello\nmore\n');
    expect(r.exit).toBe(0);
    await client.delete({ id: t.id, execId: '' });
  });

  it('gives a TTY session that can be resized', async () => {
    const t = await runTask('sh', { terminal: true, stdin: true });
    const a = attach(t.id);
    await client.start({ id: t.id, execId: '' });
    await client.resizePty({ id: t.id, execId: '', width: 132, height: 43 });
    a.stream.write({ part: { $case: 'stdin', value: Buffer.from('echo tty=$(tty) size=$(stty size)\n') } });
    await waitFor(() => /size=43 132/.test(a.output()), 'the resized terminal');
    await client.resizePty({ id: t.id, execId: '', width: 80, height: 25 });
    a.stream.write({ part: { $case: 'stdin', value: Buffer.from('echo size=$(stty size); exit 7\n') } });
    const r = await a.done;
    expect(r.out).toMatch(/tty=\/dev\/pts\/0/);
    expect(r.out).toMatch(/size=25 80/);
    expect(r.exit).toBe(7);
    // A terminal has one stream, and the log keeps it with docker's \r\n.
    expect(await logText(t.log)).toMatch(/size=43 132\r\n/);
    await client.delete({ id: t.id, execId: '' });
  });

  it('pauses and resumes through the freezer, and reports stats', async () => {
    const t = await runTask('while true; do echo tick; sleep 0.05; done', {
      patch: (s) => {
        if (s.linux) s.linux.resources = { memory: { limit: 64 << 20 }, pids: { limit: 20 } };
      },
    });
    await client.start({ id: t.id, execId: '' });
    await client.pause({ id: t.id });
    expect((await client.state({ id: t.id, execId: '' })).status).toBe(Status.STATUS_PAUSED);
    const frozenAt = (await readFile(t.log, 'utf8')).length;
    await new Promise((r) => setTimeout(r, 300));
    expect((await readFile(t.log, 'utf8')).length).toBe(frozenAt);
    await client.resume({ id: t.id });
    await waitFor(async () => (await readFile(t.log, 'utf8')).length > frozenAt, 'output after resume');
    const stats = await client.stats({ id: t.id });
    expect(stats.memoryLimit).toBe(BigInt(64 << 20));
    expect(stats.pidsLimit).toBe(20n);
    expect(stats.pidsCurrent).toBeGreaterThanOrEqual(1n);
    expect(stats.cpuUsageNanos).toBeGreaterThan(0n);
    await stopTask(client, t.id, { timeoutMs: 100 });
    await client.delete({ id: t.id, execId: '' });
  });

  it('ends a memory hog at 32 MiB with 137 and reports the OOM kill', async () => {
    const t = await runTask('x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done', {
      patch: (s) => {
        if (s.linux) s.linux.resources = { memory: { limit: 32 << 20, swap: 32 << 20 } };
      },
    });
    await client.start({ id: t.id, execId: '' });
    const exit = await client.wait({ id: t.id, execId: '' });
    expect(exit).toMatchObject({ exitStatus: 137, oomKilled: true });
    await waitFor(
      () => events.some((e) => e.event?.$case === 'taskOom' && e.event.value.containerId === t.id),
      'task.oom',
    );
    await client.delete({ id: t.id, execId: '' });
  });
});

describe('logs', () => {
  it('rotate at max-size and keep max-file files, compressed or not', async () => {
    for (const compress of [false, true]) {
      const b = await bundle('i=0; while [ $i -lt 400 ]; do echo "line $i of the log"; i=$((i+1)); done');
      await client.create({
        id: b.id,
        bundle: b.bundle,
        rootfs: [],
        terminal: false,
        stdin: false,
        log: { path: b.log, maxSize: 4096n, maxFiles: 3, compress },
        cgroupParent: '',
        runtime: '',
      });
      await client.start({ id: b.id, execId: '' });
      await client.wait({ id: b.id, execId: '' });
      const files = (await readdir(join(dir, 'logs'))).filter((f) => f.startsWith(`${b.id}.log`)).sort();
      const ext = compress ? '.gz' : '';
      expect(files).toEqual([`${b.id}.log`, `${b.id}.log.1${ext}`, `${b.id}.log.2${ext}`]);
      for (const f of files) {
        const raw = await readFile(join(dir, 'logs', f));
        const text = f.endsWith('.gz') ? gunzipSync(raw) : raw;
        expect(text.length).toBeLessThanOrEqual(4096);
        expect(text.toString()).toMatch(/^\{"log":"line \d+ of the log\\n","stream":"stdout"/);
      }
      // The newest lines are in the live file; logs reads across the files in order.
      expect(await readFile(b.log, 'utf8')).toContain('line 399 of the log');
      const seen: string[] = [];
      for await (const l of client.logs({ id: b.id, follow: false, tail: 5n })) seen.push(l.line.toString());
      expect(seen).toEqual([395, 396, 397, 398, 399].map((i) => `line ${i} of the log\n`));
      await client.delete({ id: b.id, execId: '' });
    }
  });

  it('follows a running container until it exits', async () => {
    const t = await runTask('echo one; sleep 0.3; echo two; sleep 0.3; echo three');
    await client.start({ id: t.id, execId: '' });
    const seen: string[] = [];
    for await (const l of client.logs({ id: t.id, follow: true, tail: 0n })) seen.push(l.line.toString());
    expect(seen).toEqual(['one\n', 'two\n', 'three\n']);
    await client.delete({ id: t.id, execId: '' });
  });
});

describe('the shim process', () => {
  it('outlives the process that started it and answers on its socket again', async () => {
    // A separate starter process that starts a shim and a task, then is killed.
    const starter = `
      import { startShim } from '@ctr/shim-client';
      const s = await startShim(${JSON.stringify(engine)}, 'orphan');
      process.stdout.write(String(s.pid) + '\\n');
      setInterval(() => {}, 1000);
    `;
    const { child, pids } = await startStarter(starter);
    const [shimPid] = pids;
    // A shim that hosts a task outlives its starter (one that hosts none would end with it).
    const first = await reconnect('orphan', shimPid);
    const held = await runTask('exit 0', { on: first.client });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    await new Promise((r) => setTimeout(r, 1500));
    await first.client.delete({ id: held.id, execId: '' });
    const again = await reconnect('orphan', shimPid);
    expect((await readProcStat(shimPid))?.state).not.toBe('Z');
    const t = await runTask('exit 9', { on: again.client });
    await again.client.start({ id: t.id, execId: '' });
    expect((await again.client.wait({ id: t.id, execId: '' })).exitStatus).toBe(9);
    await again.client.delete({ id: t.id, execId: '' });
  });

  it('warm: bound to a container it moves to its directory and runs its task; hosting none, it ends with its starter', async () => {
    const starter = `
      import { startShim } from '@ctr/shim-client';
      const engine = ${JSON.stringify(engine)};
      const a = await startShim(engine, 'warm-a', { warm: true });
      const b = await startShim(engine, 'warm-b', { warm: true });
      const c = await startShim(engine, 'warm-c0', { warm: true });
      await a.client.bind({ id: 'bound' });
      await c.client.bind({ id: 'bound-idle' });
      process.stdout.write(a.pid + ' ' + b.pid + ' ' + c.pid + '\\n');
      setInterval(() => {}, 1000);
    `;
    const {
      child,
      pids: [boundPid, sparePid, idlePid],
    } = await startStarter(starter);
    expect(existsSync(join(engine.state, 'shims', 'warm-a'))).toBe(false);
    expect(await readFile(join(engine.state, 'shims', 'bound', 'shim.pid'), 'utf8')).toBe(`${boundPid}\n`);
    // A spare boots behind other work, every thread of it; bound, it is at everyone's priority.
    expect(new Set(await threadNices(sparePid))).toEqual(new Set([WARM_NICE]));
    expect(new Set(await threadNices(boundPid))).toEqual(new Set([0]));
    const bound = await reconnect('bound', boundPid);
    // Bind moves a shim while it hosts nothing, never one that runs a task.
    await expect(bound.client.bind({ id: 'other' })).resolves.toEqual({});
    const t = await runTask('exit 5', { on: bound.client });
    await expect(bound.client.bind({ id: 'third' })).rejects.toThrow(/already hosts a task/);
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    // The spare nobody took ends, and takes its directory with it; so does the one bound to a
    // container but never given its task (its starter died in between). The one with a task stays.
    await waitFor(() => !existsSync(`/proc/${sparePid}`), 'the unbound warm shim to end', { timeoutMs: 5000 });
    await waitFor(() => !existsSync(`/proc/${idlePid}`), 'the bound shim with no task to end', { timeoutMs: 5000 });
    expect(existsSync(join(engine.state, 'shims', 'warm-b'))).toBe(false);
    expect(existsSync(join(engine.state, 'shims', 'bound-idle'))).toBe(false);
    expect(existsSync(`/proc/${boundPid}`)).toBe(true);
    await bound.client.start({ id: t.id, execId: '' });
    expect((await bound.client.wait({ id: t.id, execId: '' })).exitStatus).toBe(5);
    expect(existsSync(join(engine.state, 'shims', 'other', `${t.id}.exit.json`))).toBe(true);
    await bound.client.delete({ id: t.id, execId: '' });
  });

  it("warm: the ctr-init it spawns ahead runs its first plain task, at the task's priority; one that does not fit ends", async () => {
    const inits = async (pid: number) => {
      const out: number[] = [];
      for (const c of await childrenOf(pid)) if ((await readProcStat(c))?.comm === 'ctr-init') out.push(c);
      return out;
    };
    const plain = await startShim(engine, 'warm-spare1', { warm: true });
    const tty = await startShim(engine, 'warm-spare2', { warm: true });
    shims.push(plain, tty);
    const spares: number[] = [];
    for (const s of [plain, tty]) {
      await waitFor(async () => (await inits(s.pid)).length === 1, 'the spare ctr-init');
      const [spare] = await inits(s.pid);
      expect(await threadNices(spare)).toEqual([WARM_NICE]);
      spares.push(spare);
    }
    await plain.client.bind({ id: 'spare-plain' });
    const t = await runTask('echo from the spare', { on: plain.client });
    // The spare is the task's ctr-init now (it waits for the container's process), at the priority of everything else.
    expect(await inits(plain.pid)).toEqual([spares[0]]);
    expect(await threadNices(spares[0])).toEqual([0]);
    await plain.client.start({ id: t.id, execId: '' });
    expect((await plain.client.wait({ id: t.id, execId: '' })).exitStatus).toBe(0);
    expect(await logText(t.log)).toBe('from the spare\n');
    await plain.client.delete({ id: t.id, execId: '' });

    // A terminal's task needs a ctr-init with other stdio: the spare ends, and one of its own runs it.
    await tty.client.bind({ id: 'spare-tty' });
    const u = await runTask('exit 4', { on: tty.client, terminal: true });
    await waitFor(() => !existsSync(`/proc/${spares[1]}`), 'the spare that did not fit to end');
    expect(await inits(tty.pid)).not.toContain(spares[1]);
    await tty.client.start({ id: u.id, execId: '' });
    expect((await tty.client.wait({ id: u.id, execId: '' })).exitStatus).toBe(4);
    await tty.client.delete({ id: u.id, execId: '' });
  });

  it('forked from a zygote: a shim of its own (pid, session, log, spare ctr-init) sharing its heap; the unbound end with the zygote, the one with a task lives on', async () => {
    const starter = `
      import { ShimZygote, startShim } from '@ctr/shim-client';
      const engine = ${JSON.stringify(engine)};
      const z = await ShimZygote.start(engine);
      const a = await startShim(engine, 'warm-za', { warm: true, zygote: z });
      const b = await startShim(engine, 'warm-zb', { warm: true, zygote: z });
      await a.client.bind({ id: 'zbound' });
      process.stdout.write(z.pid + ' ' + a.pid + ' ' + b.pid + '\\n');
      setInterval(() => {}, 1000);
    `;
    const {
      child,
      pids: [zygotePid, boundPid, sparePid],
    } = await startStarter(starter);
    expect(new Set([zygotePid, boundPid, sparePid]).size).toBe(3);
    // Each is a process of its own: its own pid in its pid file and log, a session it leads, the zygote its parent.
    expect(await readFile(join(engine.state, 'shims', 'zbound', 'shim.pid'), 'utf8')).toBe(`${boundPid}\n`);
    expect(await readFile(join(engine.state, 'shims', 'warm-zb', 'shim.pid'), 'utf8')).toBe(`${sparePid}\n`);
    for (const pid of [boundPid, sparePid]) {
      const st = await readProcStat(pid);
      expect(st?.ppid).toBe(zygotePid);
      expect(st?.session).toBe(pid);
    }
    // And is named so in ps: its own id and the engine's flags (the test's dirs among them), not the zygote's line.
    const cmdline = async (pid: number) => (await readFile(`/proc/${pid}/cmdline`, 'utf8')).replace(/\0+/g, ' ').trim();
    expect(await cmdline(boundPid)).toMatch(new RegExp(`^ctr-shim --id zbound --root ${engine.root} `));
    expect(await cmdline(sparePid)).toMatch(/^ctr-shim --id warm-zb /);
    expect(await cmdline(zygotePid)).toContain('--zygote');
    const log = await readFile(join(engine.state, 'shims', 'warm-zb', 'shim.log'), 'utf8');
    expect(log).toContain(`"pid":${sparePid}`);
    // The warm one spawned its ctr-init ahead (child processes work in a forked Node).
    await waitFor(async () => {
      for (const c of await childrenOf(sparePid)) if ((await readProcStat(c))?.comm === 'ctr-init') return true;
      return false;
    }, 'the forked spare to spawn its ctr-init');
    // Its heap is the zygote's, copy-on-write: megabytes of it are still shared.
    const shared = Number(
      (await readFile(`/proc/${boundPid}/smaps_rollup`, 'utf8')).match(/^Shared_Dirty:\s+(\d+)/m)?.[1],
    );
    expect(shared).toBeGreaterThan(2048);
    // The zygote started no libuv thread pool (a fork keeps only its calling thread), its rehearsals included.
    const threads = await Promise.all(
      (await readdir(`/proc/${zygotePid}/task`)).map((t) => readFile(`/proc/${zygotePid}/task/${t}/comm`, 'utf8')),
    );
    expect(threads.map((c) => c.trim())).not.toContain('libuv-worker');
    expect(threads.map((c) => c.trim())).toContain('MainThread');

    const bound = await reconnect('zbound', boundPid);
    const t = await runTask('read line; echo "got $line"; exit 6', { on: bound.client, stdin: true });
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    // The zygote ends with its starter, the spare with the zygote; the shim with a task stays.
    await waitFor(() => !existsSync(`/proc/${zygotePid}`), 'the zygote to end', { timeoutMs: 5000 });
    await waitFor(() => !existsSync(`/proc/${sparePid}`), 'the unbound forked shim to end', { timeoutMs: 5000 });
    expect(existsSync(join(engine.state, 'shims', 'warm-zb'))).toBe(false);
    expect(existsSync(`/proc/${boundPid}`)).toBe(true);
    const a = attach(t.id, '', (write) => write('hi\n'), bound.client);
    await bound.client.start({ id: t.id, execId: '' });
    expect(await a.done).toEqual({ out: 'got hi\n', exit: 6 });
    expect((await bound.client.wait({ id: t.id, execId: '' })).exitStatus).toBe(6);
    expect(
      JSON.parse(await readFile(join(engine.state, 'shims', 'zbound', `${t.id}.exit.json`), 'utf8')),
    ).toMatchObject({ exitStatus: 6 });
    await bound.client.delete({ id: t.id, execId: '' });
  });

  it('warm: a starter that dies while the shim still boots is not mistaken for its new parent', async () => {
    // The starter exits the moment the shim is spawned: the shim reads its parent only once booted.
    const starter = `
      import { startShim } from '@ctr/shim-client';
      startShim(${JSON.stringify(engine)}, 'warm-early', {
        warm: true,
        onSpawn: (pid) => process.stdout.write(pid + '\\n', () => process.exit(0)),
      });
    `;
    const { child, pids } = await startStarter(starter);
    const [pid] = pids;
    await new Promise((r) => child.once('exit', r));
    expect(pid).toBeGreaterThan(0);
    await waitFor(() => !existsSync(`/proc/${pid}`), 'the orphaned warm shim to end', { timeoutMs: 8000 });
    await waitFor(() => !existsSync(join(engine.state, 'shims', 'warm-early')), 'its directory to go', {
      timeoutMs: 2000,
    });
  });

  it('tells the true exit status to a client that comes after the exit', async () => {
    const s = await startShim(engine, 'late');
    shims.push(s);
    const t = await runTask('sleep 0.2; exit 33', { on: s.client });
    await s.client.start({ id: t.id, execId: '' });
    s.client.close();
    await new Promise((r) => setTimeout(r, 800));
    const later = await reconnect('late', s.pid);
    expect((await later.client.state({ id: t.id, execId: '' })).exitStatus).toBe(33);
    expect((await later.client.wait({ id: t.id, execId: '' })).exitStatus).toBe(33);
    expect(JSON.parse(await readFile(join(engine.state, 'shims', 'late', `${t.id}.exit.json`), 'utf8'))).toMatchObject({
      exitStatus: 33,
    });
    await later.client.delete({ id: t.id, execId: '' });
  });

  it('kills and deletes its tasks when shut down now, leaving nothing', async () => {
    const s = await startShim(engine, 'doomed');
    const t = await runTask('sleep 30', { on: s.client });
    await s.client.start({ id: t.id, execId: '' });
    await s.client.shutdown({ id: '', now: true });
    await waitFor(() => !existsSync(`/proc/${s.pid}`), 'the shim to exit');
    s.client.close();
    expect(existsSync(`/proc/${t.pid}`)).toBe(false);
    expect(existsSync(`/sys/fs/cgroup/memory/ctr-${instance}/${t.id}`)).toBe(false);
    expect(existsSync(join(engine.state, 'shims', 'doomed'))).toBe(false);
  });

  it('reaps what is re-parented to it, leaving no zombie', async () => {
    const t = await runTask('sleep 0.5; exit 4');
    await client.start({ id: t.id, execId: '' });
    // Kill ctr-init's waiting parent: the container's process is re-parented to the shim (its subreaper).
    const waiter = (await readProcStat(t.pid))?.ppid as number;
    expect(waiter).not.toBe(shim.pid);
    signal(waiter, 'SIGKILL');
    await waitFor(async () => (await readProcStat(t.pid))?.ppid === shim.pid, 'the re-parenting');
    await waitFor(async () => !(await readProcStat(t.pid)), 'the orphan to be reaped', { timeoutMs: 5000 });
    for (const pid of await childrenOf(shim.pid)) expect((await readProcStat(pid))?.state).not.toBe('Z');
    await client.kill({ id: t.id, execId: '', signal: 9, all: true }).catch(() => undefined);
    await client.delete({ id: t.id, execId: '' });
  });
});

describe('with runc as the runtime', () => {
  it('runs, execs into and deletes the same bundle', async () => {
    const t = await runTask('echo from-runc; sleep 30', { runtime: 'runc' });
    await client.start({ id: t.id, execId: '' });
    const r = await execScript(t.id, 'x', 'echo exec-pid-ns=$(cat /proc/1/comm); exit 6');
    expect(r.out).toContain('exec-pid-ns=sleep');
    expect(r.exit).toBe(6);
    await client.delete({ id: t.id, execId: 'x' });
    const exit = await stopTask(client, t.id, { timeoutMs: 2000 });
    expect(exit.exitStatus).toBe(137);
    expect(await logText(t.log)).toBe('from-runc\n');
    await client.delete({ id: t.id, execId: '' });
    for (const pid of await childrenOf(shim.pid)) expect((await readProcStat(pid))?.state).not.toBe('Z');
    const runcState = await run('runc', ['--root', join(engine.state, 'shims', 'main', 'runc'), 'list', '-q']);
    expect(runcState.stdout.trim()).toBe('');
  });
});

/** The nice value of each thread of `pid` (field 19 of /proc/<pid>/task/<tid>/stat). */
async function threadNices(pid: number): Promise<number[]> {
  const tids = await readdir(`/proc/${pid}/task`);
  const stats = await Promise.all(tids.map((t) => readFile(`/proc/${pid}/task/${t}/stat`, 'utf8').catch(() => '')));
  // After the command's closing parenthesis, fields 3 onwards: nice is the 19th field.
  return stats.filter(Boolean).map((s) => Number(s.slice(s.lastIndexOf(')') + 2).split(' ')[16]));
}

/**
 * Runs `script` (an ES module that may import the workspace's packages) as a
 * process of its own, a shim's starter: it and the pids it prints on its
 * first line.
 */
async function startStarter(script: string) {
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    cwd: join(import.meta.dirname, '..'),
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const started = { child, pids: [] as number[] };
  starters.push(started);
  const line = await new Promise<string>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(d.toString())));
  started.pids = line.trim().split(' ').map(Number);
  return started;
}

/** Reconnects to a shim that is already running (what container-service does after its restart). */
async function reconnect(id: string, pid: number): Promise<Omit<RunningShim, 'exited'>> {
  const s = { id, pid, socket: join(engine.state, 'shims', id, 'shim.sock'), client: connectShim(engine, id) };
  if (!shims.some((x) => x.id === id)) shims.push(s);
  await stat(s.socket);
  return s;
}
