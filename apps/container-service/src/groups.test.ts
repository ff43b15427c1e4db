/**
 * shim.group: containers sharing shims, through ctrctl only. Three containers
 * to a shim: the fourth starts a second one; each container's shims/<id> is a
 * link into its group; a container-service killed with SIGKILL comes back to
 * the same groups (a container that exited meanwhile keeps its code); a group's
 * shim stays while it hosts a container and ends with its last.
 */
import { existsSync, lstatSync } from 'node:fs';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import {
  alive,
  type EngineAndRegistry,
  exitGate,
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
  fx = await startEngineAndRegistry({ config: { shim: { group: 3 } } });
  ({ engine, image } = fx);
}, 120_000);

afterAll(async () => {
  await fx?.stop();
});

const ok = (args: string[]) => okCtrctl(engine)(args);
const shimsDir = () => join(engine.state, 'shims');
const groups = async () => (await readdir(shimsDir())).filter((n) => n.startsWith('group-')).sort();
const groupOf = (id: string) => readlink(join(shimsDir(), id));
const pidOf = async (group: string) => Number(await readFile(join(shimsDir(), group, 'shim.pid'), 'utf8'));

describe('containers sharing shims (shim.group 3)', () => {
  it('groups containers three to a shim, survives a kill -9 of container-service, and ends a group with its last container', async () => {
    await ok(['pull', '-q', image]);
    const ids: string[] = [];
    for (let i = 0; i < 4; i++) ids.push(await ok(['run', '-d', '--name', `g${i}`, image, 'sleep', '600']));
    for (const id of ids) expect(lstatSync(join(shimsDir(), id)).isSymbolicLink()).toBe(true);
    const of = await Promise.all(ids.map(groupOf));
    expect(new Set(of.slice(0, 3)).size).toBe(1);
    expect(of[3]).not.toBe(of[0]);
    expect(await groups()).toEqual([...new Set(of)].sort());
    const [first, second] = [of[0], of[3]];
    const firstPid = await pidOf(first);
    expect(await ok(['exec', 'g1', 'echo', 'in-group'])).toBe('in-group');
    expect(await ok(['logs', 'g2'])).toBe('');

    // One ends while container-service is down: its code is kept, and it leaves its group.
    const gate = await exitGate(join(engine.dir, 'gate'));
    const coded = await ok(['run', '-d', '-v', gate.volume, image, ...gate.command(7)]);
    expect(await groupOf(coded)).toBe(second);
    await engine.crashService('container-service', {
      whileDown: async () => {
        await gate.open();
        await sleep(500);
      },
    });
    await waitFor(async () => (await ok(['inspect', '-f', '{{.State.Status}}', coded])) === 'exited', 'the exit');
    expect(await ok(['inspect', '-f', '{{.State.ExitCode}}', coded])).toBe('7');
    expect(existsSync(join(shimsDir(), coded))).toBe(false);
    for (const id of ids) expect(await ok(['inspect', '-f', '{{.State.Status}}', id])).toBe('running');
    expect(await ok(['exec', 'g3', 'echo', 'still'])).toBe('still');

    // The new service fills the group that has room before it makes another.
    const joiner = await ok(['run', '-d', image, 'sleep', '600']);
    expect(await groupOf(joiner)).toBe(second);

    // A group stays while any of its containers runs, and ends with the last.
    await ok(['rm', '-f', ids[0], ids[1]]);
    expect(alive(firstPid)).toBe(true);
    expect(await groups()).toContain(first);
    await ok(['rm', '-f', ids[2]]);
    await waitFor(() => !alive(firstPid), 'the emptied group shim to end');
    expect(await groups()).not.toContain(first);

    // run --rm in a group: the output, the code, and nothing left of it.
    const r = await engine.ctrctl(['run', '--rm', image, 'sh', '-c', 'echo grouped; exit 3']);
    expect(r).toMatchObject({ stdout: 'grouped\n', code: 3 });

    await ok(['rm', '-f', ids[3], joiner, coded]);
    await waitFor(async () => (await groups()).length === 0, 'every group to end');
    expect((await readdir(shimsDir())).filter((n) => !n.startsWith('warm-'))).toEqual([]);
  }, 120_000);
});
