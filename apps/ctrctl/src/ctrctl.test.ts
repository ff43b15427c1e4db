/** ctrctl against a real isolated engine, through its process, as a user runs it. */
import { run, signal, TestEngine, waitFor } from '@ctr/testkit';
import { CTRCTL_MAIN } from '@ctr/testkit';
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

describe('ctrctl', () => {
  let engine: TestEngine;
  beforeAll(async () => {
    engine = await TestEngine.start();
  });
  afterAll(async () => {
    await engine?.stop();
  });

  it('lists the daemons as a table and as JSON lines', async () => {
    const table = await engine.ctrctl(['system', 'services']);
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^NAME\s+PID\s+STATE\s+UPTIME\s+RESTARTS\s+VERSION$/);
    expect(lines).toHaveLength(6);
    for (const l of lines.slice(1)) expect(l).toMatch(/^\S+\s+\d+\s+healthy\s+Up /);

    const json = await engine.ctrctl(['system', 'services', '--format', 'json']);
    const objs = json.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(objs.map((o) => o.name).sort()).toEqual([
      'container-service',
      'image-service',
      'nats-server',
      'network-service',
      'snapshotter',
    ]);
    for (const o of objs) expect(Object.keys(o)).toEqual(['name', 'pid', 'state', 'restarts', 'startedAt', 'version']);
  });

  it('prints version and info, also through templates', async () => {
    const v = await engine.ctrctl(['version']);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/Client:\n Version:\s+\d+\.\d+\.\d+/);
    expect(v.stdout).toMatch(/Server:\n Engine:/);
    expect(v.stdout).toMatch(/NATS:\n {2}Version:\s+v2\./);
    const t = await engine.ctrctl(['version', '--format', '{{.Server.ApiVersion}}']);
    expect(t.stdout).toBe('v1\n');
    // docker --version / -v: one line, no daemon needed; -v after a command stays that command's.
    for (const flag of ['--version', '-v']) {
      expect(await engine.ctrctl([flag])).toMatchObject({ code: 0, stdout: 'ctrctl version 0.1.0, API v1\n' });
    }
    expect((await engine.ctrctl(['--help'])).stdout).toContain('-v, --version');
    const info = await engine.ctrctl(['info', '--format', 'json']);
    const i = JSON.parse(info.stdout);
    expect(i).toMatchObject({
      Instance: engine.instance,
      RootDir: engine.root,
      StateDir: engine.state,
      Services: 5,
      ServicesHealthy: 5,
      EventsEmbedded: true,
    });
    expect(['1', '2', 'hybrid']).toContain(i.CgroupVersion);
    const text = await engine.ctrctl(['info']);
    expect(text.stdout).toContain(` Instance: ${engine.instance}`);
  });

  it('follows events live', async () => {
    const follower = spawn(
      process.execPath,
      [CTRCTL_MAIN, 'events', '--format', '{{.Type}} {{.Action}} {{.Actor.ID}}'],
      { env: engine.env },
    );
    let out = '';
    follower.stdout.on('data', (d) => (out += d));
    await new Promise((r) => setTimeout(r, 800));
    const snap = await engine.service('snapshotter');
    signal(snap.pid, 'SIGKILL');
    await waitFor(() => out.includes('service restart snapshotter'), 'the live restart event', { timeoutMs: 10_000 });
    expect(out).toContain('service die snapshotter');
    const exited = new Promise((r) => follower.once('exit', r));
    follower.kill('SIGINT');
    await exited;
  });

  it('exits 125 with one line when the daemon is unreachable', async () => {
    const r = await run(process.execPath, [CTRCTL_MAIN, '--state', '/tmp/ctr-nowhere', 'system', 'services'], {
      env: { ...process.env, CTR_CONFIG: engine.env.CTR_CONFIG },
    });
    expect(r.code).toBe(125);
    expect(r.stderr).toBe('Cannot connect to the ctr daemon at unix:///tmp/ctr-nowhere/ctrd.sock. Is ctrd running?\n');
  });

  it('answers bad usage as docker does', async () => {
    const flag = await engine.ctrctl(['system', 'services', '--bogus']);
    expect(flag.code).toBe(125);
    expect(flag.stderr).toBe("unknown flag: --bogus\nSee 'ctrctl system services --help'.\n");
    const extra = await engine.ctrctl(['version', 'extra']);
    expect(extra.code).toBe(1);
    expect(extra.stderr.split('\n')[0]).toBe('"ctrctl version" accepts no arguments.');
    const unknown = await engine.ctrctl(['frobnicate']);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toContain("'frobnicate' is not a ctrctl command.");
    const badTime = await engine.ctrctl(['events', '--since', 'yesterday']);
    expect(badTime.code).toBe(125);
    const help = await engine.ctrctl(['events', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('Usage:  ctrctl events [OPTIONS]');
    const top = await engine.ctrctl([]);
    expect(top.stdout).toContain('Management Commands:');
  });

  it('takes --root/--state/--instance as flags as well as from the environment', async () => {
    const r = await run(
      process.execPath,
      [
        CTRCTL_MAIN,
        '--root',
        engine.root,
        '--state',
        engine.state,
        '--instance',
        engine.instance,
        'info',
        '--format',
        '{{.Instance}}',
      ],
      { env: { ...process.env, CTR_CONFIG: engine.env.CTR_CONFIG } },
    );
    expect(r.stdout).toBe(`${engine.instance}\n`);
  });
});
