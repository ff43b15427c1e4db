import { mkdtempSync, statSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { ContainersService, TasksService } from '@ctr/api/containers/v1/containers';
import { EventsService, SupervisorService } from '@ctr/api/supervisor/v1/supervisor';
import { afterAll, describe, expect, it } from 'vitest';
import { isKind, notFound, unavailable } from './errors.js';
import { claimSocket, dial, implement, readStream, serve } from './grpc.js';
import { serveH2 } from './grpc-server.js';
import { answeredByDaemon, dialH2, preconnect } from './grpc-client.js';

const dir = mkdtempSync('/tmp/ctr-grpc-');
afterAll(() => rm(dir, { recursive: true, force: true }));

const supervisor = (impl: Parameters<typeof implement<typeof SupervisorService>>[1]) => ({
  definition: SupervisorService,
  implementation: implement(SupervisorService, impl),
});

// A daemon's placeholders while it starts (grpc.ts's server, the daemons').
describe.each([
  ['grpc-js', dial],
  ['h2.ts', dialH2],
] as const)('gRPC while a daemon starts, %s client', (clientName, dial) => {
  it('answers UNAVAILABLE, which a client retries, while the daemon starts; then the real handlers', async () => {
    const socket = join(dir, `${clientName}-starting.sock`);
    const server = await serve(socket, []);
    try {
      server.starting('supervisor', [SupervisorService, EventsService]);
      const client = dial(SupervisorService, socket);
      const early = await client.version({}).catch((e) => e);
      expect(isKind(early, 'Unavailable')).toBe(true);
      expect(early.message).toBe('supervisor is starting');
      const stream = await readStream(dial(EventsService, socket).subscribe({ topics: [] }))
        .next()
        .catch((e) => e);
      expect(isKind(stream, 'Unavailable')).toBe(true);
      setTimeout(
        () =>
          server.add([
            supervisor({
              version: async () => ({
                version: '1',
                revision: '',
                nodeVersion: '',
                natsVersion: '',
                apiVersion: 'v1',
              }),
            }),
          ]),
        150,
      );
      expect((await client.version({}, { retryMs: 5000 })).version).toBe('1');
      client.close();
    } finally {
      await server.close();
    }
  });
});

// Every test runs with both clients, grpc-js's (daemons) and grpc-client.ts's (ctrctl), against both
// servers, grpc-js's (daemons) and grpc-server.ts's (the shim).
describe.each([
  ['grpc-js', 'grpc-js', dial, serve],
  ['h2.ts', 'grpc-js', dialH2, serve],
  ['grpc-js', 'grpc-server.ts', dial, serveH2],
  ['h2.ts', 'grpc-server.ts', dialH2, serveH2],
] as const)('gRPC on unix sockets, %s client, %s server', (clientName, serverName, dial, serveWith) => {
  const _name = `${clientName}-${serverName}`;
  it('serves on a 0660 socket and carries typed errors both ways', async () => {
    const socket = join(dir, `${_name}-a.sock`);
    const server = await serveWith(socket, [
      supervisor({
        version: async () => ({ version: '9.9', revision: '', nodeVersion: '', natsVersion: '', apiVersion: 'v1' }),
        restartService: async ({ name }) => {
          throw notFound(`no such service: ${name}`);
        },
        info: async () => {
          throw new Error('disk on fire\nstack line');
        },
      }),
    ]);
    try {
      expect(statSync(socket).mode & 0o777).toBe(0o660);
      const client = dial(SupervisorService, socket);
      expect((await client.version({})).version).toBe('9.9');
      const err = await client.restartService({ name: 'nope' }).catch((e) => e);
      expect(isKind(err, 'NotFound')).toBe(true);
      expect(err.message).toBe('no such service: nope');
      const internal = await client.info({}).catch((e) => e);
      expect(isKind(internal, 'Internal')).toBe(true);
      expect(internal.message).toBe('disk on fire');
      // A method with no handler answers UNIMPLEMENTED.
      const unimpl = await client.listServices({}).catch((e) => e);
      expect(isKind(unimpl, 'Unimplemented')).toBe(true);
      client.close();
    } finally {
      await server.close();
    }
  });

  it('streams server responses', async () => {
    const socket = join(dir, `${_name}-stream.sock`);
    const server = await serveWith(socket, [
      {
        definition: EventsService,
        implementation: implement(EventsService, {
          subscribe: async (_req, call) => {
            for (let i = 1; i <= 3; i++) call.write({ sequence: BigInt(i) });
          },
        }),
      },
    ]);
    const client = dial(EventsService, socket);
    const seqs: bigint[] = [];
    for await (const r of readStream(client.subscribe({ topics: [] }))) seqs.push(r.sequence);
    expect(seqs).toEqual([1n, 2n, 3n]);
    client.close();
    await server.close();
  });

  it('fails fast when nothing listens, and retries UNAVAILABLE while a daemon comes up', async () => {
    const socket = join(dir, `${_name}-late.sock`);
    const client = dial(SupervisorService, socket);
    const err = await client.version({}, { timeoutMs: 2000 }).catch((e) => e);
    expect(isKind(err, 'Unavailable')).toBe(true);

    const started = Date.now();
    let server: Awaited<ReturnType<typeof serve>> | undefined;
    setTimeout(async () => {
      server = await serveWith(socket, [
        supervisor({
          version: async () => ({ version: 'late', revision: '', nodeVersion: '', natsVersion: '', apiVersion: '' }),
        }),
      ]);
    }, 300);
    const res = await client.version({}, { timeoutMs: 2000, retryMs: 5000 });
    expect(res.version).toBe('late');
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    client.close();
    await server?.close();
  });

  it('enforces deadlines', async () => {
    const socket = join(dir, `${_name}-slow.sock`);
    const server = await serveWith(socket, [
      supervisor({
        version: () =>
          new Promise((r) =>
            setTimeout(() => r({ version: '', revision: '', nodeVersion: '', natsVersion: '', apiVersion: '' }), 2000),
          ),
      }),
    ]);
    const client = dial(SupervisorService, socket);
    const err = await client.version({}, { timeoutMs: 200 }).catch((e) => e);
    expect(isKind(err, 'DeadlineExceeded')).toBe(true);
    client.close();
    await server.close(0);
  });
  it('streams requests, both ways, with flow control, and cancels', async () => {
    const socket = join(dir, `${_name}-bidi.sock`);
    let received = 0;
    const server = await serveWith(socket, [
      {
        definition: ContainersService,
        implementation: implement(ContainersService, {
          copyIn: async (call) => {
            let bytes = 0;
            for await (const m of call) if (m.part?.$case === 'chunk') bytes += m.part.value.length;
            if (bytes === 0) throw notFound('nothing came');
            received += bytes;
            return {};
          },
        }),
      },
      {
        definition: TasksService,
        implementation: implement(TasksService, {
          // Echoes stdin as stdout; "big" asks for 5 MiB in one message.
          attach: async (call) => {
            for await (const m of call) {
              if (m.part?.$case !== 'stdin') continue;
              const text = m.part.value.toString();
              call.write({
                part: { $case: 'stdout', value: text === 'big' ? Buffer.alloc(5 << 20, 7) : m.part.value },
              });
            }
          },
        }),
      },
    ]);
    try {
      const containers = dial(ContainersService, socket);
      const { stream, response } = containers.copyIn();
      for (let i = 0; i < 200; i++) {
        if (!stream.write({ part: { $case: 'chunk', value: Buffer.alloc(64 * 1024, i) } }))
          await new Promise((r) => stream.once('drain', r));
      }
      stream.end();
      await response;
      expect(received).toBe(200 * 64 * 1024);
      const empty = containers.copyIn();
      empty.stream.end();
      expect(isKind(await empty.response.catch((e) => e), 'NotFound')).toBe(true);
      containers.close();

      const tasks = dial(TasksService, socket);
      const call = tasks.attach();
      const out: Buffer[] = [];
      const ended = new Promise<unknown>((resolve) => {
        call.on('data', (m) => {
          if (m.part?.$case === 'stdout') out.push(m.part.value);
          if (out.length === 2) call.cancel();
        });
        call.on('error', resolve);
        call.on('end', () => resolve(undefined));
      });
      call.write({ part: { $case: 'stdin', value: Buffer.from('hello') } });
      call.write({ part: { $case: 'stdin', value: Buffer.from('big') } });
      // Cancelled by the client: the call fails with CANCELLED (code 1), as grpc-js's does.
      expect(((await ended) as { code?: number }).code).toBe(1);
      expect(out[0].toString()).toBe('hello');
      expect(out[1].length).toBe(5 << 20);
      expect(out[1].every((b) => b === 7)).toBe(true);
      tasks.close();
    } finally {
      await server.close(0);
    }
  });

  it("tells a daemon's UNAVAILABLE from a channel that failed", async () => {
    const socket = join(dir, `${_name}-origin.sock`);
    const server = await serveWith(socket, [
      supervisor({
        version: async () => {
          throw unavailable('registry.example: connection refused');
        },
      }),
    ]);
    const client = dial(SupervisorService, socket);
    const answered = await client.version({}).catch((e) => e);
    expect(isKind(answered, 'Unavailable')).toBe(true);
    expect(answered.message).toBe('registry.example: connection refused');
    expect(answeredByDaemon(answered)).toBe(true);
    client.close();
    await server.close(0);
    const gone = dial(SupervisorService, socket);
    const failed = await gone.version({}).catch((e) => e);
    expect(isKind(failed, 'Unavailable')).toBe(true);
    expect(answeredByDaemon(failed)).toBe(false);
    gone.close();
  });

  it('reconnects to a daemon that restarted on the same socket', async () => {
    const socket = join(dir, `${_name}-restart.sock`);
    const version = (v: string) =>
      supervisor({
        version: async () => ({ version: v, revision: '', nodeVersion: '', natsVersion: '', apiVersion: '' }),
      });
    let server = await serveWith(socket, [version('1')]);
    const client = dial(SupervisorService, socket);
    expect((await client.version({})).version).toBe('1');
    await server.close(0);
    server = await serveWith(socket, [version('2')]);
    expect((await client.version({}, { retryMs: 5000 })).version).toBe('2');
    client.close();
    await server.close(0);
  });
});

describe('gRPC sockets', () => {
  it('removes a stale socket but refuses one that is alive', async () => {
    const socket = join(dir, 'stale.sock');
    // A socket file nobody listens on, as a SIGKILLed daemon leaves it.
    const { spawnSync } = await import('node:child_process');
    spawnSync('python3', ['-c', `import socket;s=socket.socket(socket.AF_UNIX);s.bind(${JSON.stringify(socket)})`]);
    expect(statSync(socket).isSocket()).toBe(true);
    await claimSocket(socket);
    const server = await serve(socket, [supervisor({})]);
    const err = await serve(socket, [supervisor({})]).catch((e) => e);
    expect(isKind(err, 'AlreadyExists')).toBe(true);
    await server.close();
  });

  it('refuses a path that is not a socket', async () => {
    const path = join(dir, 'plain-file');
    writeFileSync(path, 'x');
    const err = await claimSocket(path).catch((e) => e);
    expect(isKind(err, 'FailedPrecondition')).toBe(true);
  });
});

describe('preconnect (ctrctl dials while a command loads)', () => {
  const version = supervisor({
    version: async () => ({ version: 'pre', revision: '', nodeVersion: '', natsVersion: '', apiVersion: '' }),
  });

  it('begins the connection that the next dialH2 of the socket takes; its release closes it', async () => {
    const real = join(dir, 'pre-real.sock');
    const front = join(dir, 'pre-front.sock');
    const server = await serve(real, [version]);
    // A counting proxy in front of the daemon: every connection made to it, and whether it is still open.
    const open = new Set<Socket>();
    let made = 0;
    const proxy = createServer((c) => {
      made++;
      open.add(c);
      const up = netConnect(real);
      c.on('error', () => undefined);
      up.on('error', () => undefined);
      c.pipe(up).pipe(c);
      c.on('close', () => {
        open.delete(c);
        up.destroy();
      });
      up.on('close', () => c.destroy());
    });
    await new Promise<void>((r) => proxy.listen(front, r));
    try {
      const release = preconnect(front);
      await waitUntil(() => made === 1);
      const client = dialH2(SupervisorService, front);
      expect((await client.version({})).version).toBe('pre');
      expect(made).toBe(1);
      client.close();
      expect(open.size).toBe(1); // the preconnect still holds it
      release();
      await waitUntil(() => open.size === 0);
      // Nobody took this one: the release closes it.
      preconnect(front)();
      await waitUntil(() => made === 2 && open.size === 0);
    } finally {
      await new Promise((r) => proxy.close(r));
      await server.close();
    }
  });

  it('fails nothing when no daemon listens: the call reports it', async () => {
    const missing = join(dir, 'pre-missing.sock');
    const release = preconnect(missing);
    const client = dialH2(SupervisorService, missing);
    const err = await client.version({}, { timeoutMs: 2000 }).catch((e) => e);
    expect(isKind(err, 'Unavailable')).toBe(true);
    expect(answeredByDaemon(err)).toBe(false);
    client.close();
    release();
  });
});

async function waitUntil(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}
