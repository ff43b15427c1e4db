/**
 * Chaos soak (`nx run e2e:chaos`, bounded: CHAOS_SECONDS, 90 by default):
 * parallel container lifecycles through ctrctl while a random daemon is
 * SIGKILLed every few seconds (ctrd itself once). Commands may fail while a
 * daemon is down; that is allowed. What is checked at the end: every
 * container's reported state matches the host (a running one has its
 * process, its shim and its namespace; a stopped one has none of them), and
 * once everything is removed, nothing is left that nothing owns: no shim,
 * namespace, sandbox, endpoint, container snapshot, mount, veth, iptables
 * rule, cgroup or process (the engine's own teardown check).
 *
 * `nx run e2e:chaos-grouped` runs the same soak with containers sharing
 * shims (CHAOS_SHIM_GROUP=4, the engine's shim.group).
 */
import { existsSync } from 'node:fs';
import { readdir, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { ContainersService } from '@ctr/api/containers/v1/containers';
import { NetworksService } from '@ctr/api/networks/v1/networks';
import { SnapshotsService } from '@ctr/api/snapshots/v1/snapshots';
import { ServiceState } from '@ctr/api/supervisor/v1/supervisor';
import { readStream } from '@ctr/common/grpc';
import { alive, type EngineAndRegistry, sleep, startEngineAndRegistry, type TestEngine, waitFor } from '@ctr/testkit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const SECONDS = Number(process.env.CHAOS_SECONDS ?? 90);
const WORKERS = 4;
const VICTIMS = ['image-service', 'snapshotter', 'network-service', 'container-service', 'nats-server'];

let fx: EngineAndRegistry;
let engine: TestEngine;
let image: string;

beforeAll(async () => {
  // CHAOS_SHIM_GROUP: the same soak with containers sharing shims (shim.group).
  const group = Number(process.env.CHAOS_SHIM_GROUP ?? 1);
  fx = await startEngineAndRegistry(group > 1 ? { config: { shim: { group } } } : {});
  ({ engine, image } = fx);
  const pull = await engine.ctrctl(['pull', '-q', image]);
  if (pull.code !== 0) throw new Error(pull.stderr);
}, 120_000);

afterAll(async () => {
  await fx?.stop();
});

const warmShims = async (): Promise<string[]> =>
  (await readdir(join(engine.state, 'shims')).catch(() => [] as string[])).filter((n) => n.startsWith('warm-'));

describe('chaos', () => {
  it(
    'container lifecycles under random daemon kills end consistent and leave nothing',
    async () => {
      const deadline = Date.now() + SECONDS * 1000;
      const stats = { ok: 0, failed: 0, lifecycles: 0, kills: [] as string[] };
      const c = (args: string[]) =>
        engine.ctrctl(args, { timeoutMs: 60_000 }).then((r) => {
          if (r.code === 0) stats.ok++;
          else stats.failed++;
          return r;
        });

      const worker = async (w: number) => {
        for (let n = 0; Date.now() < deadline; n++) {
          const name = `w${w}-${n}`;
          const steps: string[][] = [
            ['run', '-d', '--name', name, ...(n % 3 === 0 ? ['-p', '127.0.0.1::80'] : []), image, 'sleep', '1000'],
            ['exec', name, 'true'],
            n % 2 ? ['stop', '-t', '1', name] : ['kill', name],
            ['start', name],
            ['restart', '-t', '1', name],
            ['rm', '-f', name],
          ];
          let done = true;
          for (const s of steps) if ((await c(s)).code !== 0) done = false;
          if (done) stats.lifecycles++;
          await c(['run', '--rm', image, 'true']);
          // Whatever a failure left, the name is freed for the end check to count only what is running.
          if (!done) await c(['rm', '-f', name]);
        }
      };

      const killer = async () => {
        let ctrdKilled = false;
        while (Date.now() < deadline - 5000) {
          await sleep(2000 + Math.random() * 3000);
          if (!ctrdKilled && Date.now() > deadline - SECONDS * 500) {
            ctrdKilled = true;
            stats.kills.push('ctrd');
            await engine.killCtrd();
            await sleep(500);
            await engine.startCtrd();
            continue;
          }
          const victim = VICTIMS[Math.floor(Math.random() * VICTIMS.length)];
          stats.kills.push(victim);
          await engine.crashService(victim, 30_000);
        }
      };

      await Promise.all([killer(), ...Array.from({ length: WORKERS }, (_, i) => worker(i))]);
      console.log(
        `chaos: ${SECONDS}s, ${stats.lifecycles} whole lifecycles, ${stats.ok} commands ok, ${stats.failed} failed, kills: ${stats.kills.join(' ')}`,
      );
      expect(stats.lifecycles).toBeGreaterThan(0);
      expect(stats.kills.length).toBeGreaterThan(3);

      // Every daemon is back.
      await waitFor(
        async () => (await engine.services()).every((s) => s.state === ServiceState.SERVICE_STATE_HEALTHY),
        'every daemon healthy',
        { timeoutMs: 30_000 },
      );

      // Reported state matches the host.
      const containers = engine.client(ContainersService, 'container-service');
      const { containers: all } = await containers.list({ all: true, filters: [], size: false });
      const running = new Set<string>();
      for (const ct of all) {
        const st = ct.state;
        const shimDir = join(engine.state, 'shims', ct.id);
        if (st?.status === 'running') {
          running.add(ct.id);
          expect(alive(st.pid), `${ct.name} running with pid ${st.pid}`).toBe(true);
          expect(existsSync(shimDir), `${ct.name}'s shim`).toBe(true);
          const ex = await engine.ctrctl(['exec', ct.id, 'true']);
          expect(ex.code, `exec in ${ct.name}: ${ex.stderr}`).toBe(0);
        } else if (st?.status !== 'restarting' && st?.status !== 'paused') {
          expect(existsSync(shimDir), `${ct.name} (${st?.status}) holds no shim`).toBe(false);
        }
      }
      // Besides the containers' shims, container-service's one warm shim (started ahead, hosting nothing),
      // and with shim.group the groups, each linked from a running container.
      const shims = await readdir(join(engine.state, 'shims')).catch(() => [] as string[]);
      const linked = new Set<string>();
      for (const id of running) {
        const target = await readlink(join(engine.state, 'shims', id)).catch(() => '');
        if (target) linked.add(target);
      }
      for (const id of shims.filter((n) => !n.startsWith('warm-'))) {
        if (id.startsWith('group-')) expect(linked.has(id), `group ${id} hosts a running container`).toBe(true);
        else expect(running.has(id), `shim ${id} belongs to a running container`).toBe(true);
      }
      await waitFor(async () => (await warmShims()).length <= 1, 'one warm shim at most');
      for (const id of await readdir(join(engine.state, 'netns')).catch(() => [] as string[]))
        expect(running.has(id), `namespace ${id} belongs to a running container`).toBe(true);

      // Removed, the engine holds nothing for containers.
      for (const ct of all) expect((await engine.ctrctl(['rm', '-f', '-v', ct.id])).code).toBe(0);
      const networks = engine.client(NetworksService, 'network-service');
      expect((await networks.listSandboxes({})).sandboxes).toEqual([]);
      expect((await networks.listEndpoints({ containerId: '', network: '' })).endpoints).toEqual([]);
      const snapshots = engine.client(SnapshotsService, 'snapshotter');
      const left: string[] = [];
      for await (const page of readStream(snapshots.list({ filters: [] })))
        for (const s of page.info) if (s.labels['ctr.container']) left.push(s.name);
      expect(left, `container snapshots left: ${left.join(' ')}`).toEqual([]);
      expect(
        (await readdir(join(engine.state, 'shims')).catch(() => [])).filter((n) => !n.startsWith('warm-')),
      ).toEqual([]);
      // engine.stop() in afterAll checks mounts, links, namespaces, iptables, cgroups and processes.
    },
    (SECONDS + 240) * 1000,
  );
});
