/**
 * ctrd with real processes: an isolated engine (own root, state, instance,
 * embedded nats-server) started from the built apps, as a user starts it.
 */
import { ServiceState } from '@ctr/api/supervisor/v1/supervisor';
import { findLeaks, TestEngine, waitFor } from '@ctr/testkit';
import { processAlive } from '@ctr/sys/proc';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const SERVICES = ['image-service', 'snapshotter', 'network-service', 'container-service'];

describe('ctrd supervising the services', () => {
  let engine: TestEngine;
  beforeAll(async () => {
    engine = await TestEngine.start();
  });
  afterAll(async () => {
    await engine?.stop();
  });

  it('runs NATS and the four services, each healthy on its own socket', async () => {
    const services = await engine.services();
    expect(services.map((s) => s.name).sort()).toEqual([...SERVICES, 'nats-server'].sort());
    for (const s of services) {
      expect(s.state).toBe(ServiceState.SERVICE_STATE_HEALTHY);
      expect(await processAlive(s.pid)).toBe(true);
    }
  });

  for (const name of SERVICES) {
    it(`restarts ${name} within 2 s of a SIGKILL and counts it`, async () => {
      const { before, after, ms } = await engine.crashService(name);
      expect(ms).toBeLessThan(2000);
      expect(after.restarts).toBe(before.restarts + 1);
    });
  }

  it('says so on the event bus and in its log', async () => {
    const restarts = await engine.pastEvents(['type=service', 'event=restart']);
    expect(restarts.map((e) => e.Actor.ID).sort()).toEqual([...SERVICES].sort());
    expect(await engine.ctrdLog()).toMatch(/"service":"snapshotter".*"msg":"service restarted"/);
  });

  it('restarts NATS too, on the same port, and events still flow', async () => {
    await engine.crashService('nats-server');
    const { after } = await engine.crashService('snapshotter');
    await waitFor(async () => {
      const events = await engine.pastEvents(['service=snapshotter', 'event=restart'], '1m');
      return events.some((e) => e.Actor.Attributes.pid === String(after.pid));
    }, 'the snapshotter restart event after the NATS restart');
  });

  it('adopts the running services when ctrd is SIGKILLed and started again', async () => {
    const before = await engine.services();
    await engine.killCtrd();
    // Nothing stops with ctrd.
    for (const s of before) expect(await processAlive(s.pid)).toBe(true);
    await engine.startCtrd();
    const after = await engine.services();
    expect(after.map((s) => [s.name, s.pid]).sort()).toEqual(before.map((s) => [s.name, s.pid]).sort());
    expect(await engine.ctrdLog()).toMatch(/adopted running service/);
  });

  it('refuses a second ctrd on the same state dir', async () => {
    const { run } = await import('@ctr/testkit');
    const { CTRD_MAIN } = await import('@ctr/testkit');
    const r = await run(process.execPath, [CTRD_MAIN], { env: engine.env, timeoutMs: 20_000 });
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/ctrd is already running for this state dir \(pid \d+\)/);
    // And it left the running engine alone.
    expect((await engine.services()).every((s) => s.state === ServiceState.SERVICE_STATE_HEALTHY)).toBe(true);
  });

  it('restarts a service on request', async () => {
    const before = await engine.service('network-service');
    const res = await engine.supervisor().restartService({ name: 'network-service' }, { timeoutMs: 20_000 });
    expect(res.pid).not.toBe(before.pid);
    expect(res.state).toBe(ServiceState.SERVICE_STATE_HEALTHY);
    const err = await engine
      .supervisor()
      .restartService({ name: 'nope' })
      .catch((e) => e);
    expect(err.kind).toBe('NotFound');
  });
});

describe('two engines on one host', () => {
  it('do not share sockets, processes or events, and SIGTERM stops everything', async () => {
    const [a, b] = await Promise.all([TestEngine.start(), TestEngine.start()]);
    try {
      expect(a.paths.supervisorSocket).not.toBe(b.paths.supervisorSocket);
      const pidsA = (await a.services()).map((s) => s.pid);
      const pidsB = (await b.services()).map((s) => s.pid);
      expect(pidsA.filter((p) => pidsB.includes(p))).toEqual([]);
      // A restart in A is an event of A only.
      await a.crashService('snapshotter');
      await waitFor(async () => (await a.pastEvents(['event=restart'], '1m')).length > 0, 'the event in A');
      expect(await b.pastEvents(['event=restart'], '1m')).toEqual([]);
    } finally {
      await Promise.all([a.stop(), b.stop()]);
    }
    for (const e of [a, b]) expect(await findLeaks({ instance: e.instance, dirs: [e.dir] })).toEqual([]);
  });
});
