/** What the container commands share: docker's shapes (inspect, ps rows, statuses) and the attach loop. */
import type {
  AttachRequest,
  AttachResponse,
  Container,
  CreateContainerRequest,
  TasksService,
} from '@ctr/api/containers/v1/containers';
import { fromGrpcError } from '@ctr/common/errors';
import type { ApiClient } from '@ctr/common/grpc-client';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { humanDuration } from './format.js';

export const shortCid = (id: string) => id.slice(0, 12);

/** "Up 3 seconds", "Exited (0) 2 minutes ago", "Created", "Restarting (1) 1 second ago". */
export function statusText(c: Container, now = Date.now()): string {
  const st = c.state;
  switch (st?.status) {
    case 'running':
      return `Up ${humanDuration(now - (st.startedAt?.getTime() ?? now))}`;
    case 'paused':
      return `Up ${humanDuration(now - (st.startedAt?.getTime() ?? now))} (Paused)`;
    case 'restarting':
      return `Restarting (${st.exitCode}) ${humanDuration(now - (st.finishedAt?.getTime() ?? now))} ago`;
    case 'exited':
      return `Exited (${st.exitCode}) ${humanDuration(now - (st.finishedAt?.getTime() ?? now))} ago`;
    case 'removing':
      return 'Removal In Progress';
    case 'dead':
      return 'Dead';
    default:
      return 'Created';
  }
}

/** "127.0.0.1:8080->80/tcp, 0.0.0.0:5353->53/udp", exposed-only ports as "80/tcp". */
export function portsText(c: Container): string {
  const published = c.ports.map((p) => `${p.hostIp || '0.0.0.0'}:${p.hostPort}->${p.containerPort}/${p.protocol}`);
  const exposed = (c.config?.exposedPorts ?? []).filter(
    (e) => !c.ports.some((p) => `${p.containerPort}/${p.protocol}` === e),
  );
  return [...published, ...(c.state?.status === 'running' ? exposed : [])].join(', ');
}

export function commandText(c: Container, noTrunc = false): string {
  const cmd = [c.path, ...c.args].join(' ');
  const shown = !noTrunc && cmd.length > 20 ? `${cmd.slice(0, 19)}…` : cmd;
  return `"${shown}"`;
}

/** docker ps --format json's fields. */
export function psRow(c: Container, noTrunc = false) {
  const now = Date.now();
  return {
    Command: commandText(c, noTrunc),
    CreatedAt: c.createdAt?.toISOString() ?? '',
    ID: noTrunc ? c.id : shortCid(c.id),
    Image: c.image,
    Labels: Object.entries(c.config?.labels ?? {})
      .map(([k, v]) => `${k}=${v}`)
      .join(','),
    Mounts: c.mounts.map((m) => (m.type === 'volume' ? m.source.slice(0, 15) : m.source)).join(','),
    Names: c.name,
    Networks: c.networks.map((n) => n.networkName).join(',') || (c.config?.networkMode ?? ''),
    Ports: portsText(c),
    RunningFor: `${humanDuration(now - (c.createdAt?.getTime() ?? now))} ago`,
    State: c.state?.status ?? 'created',
    Status: statusText(c, now),
  };
}

const iso = (d: Date | undefined) => (d ? d.toISOString() : '0001-01-01T00:00:00Z');

function portMap(c: Container) {
  const out: Record<string, { HostIp: string; HostPort: string }[] | null> = {};
  for (const e of c.config?.exposedPorts ?? []) out[e] = null;
  for (const p of c.ports) {
    const key = `${p.containerPort}/${p.protocol}`;
    out[key] = [...(out[key] ?? []), { HostIp: p.hostIp || '0.0.0.0', HostPort: String(p.hostPort) }];
  }
  return out;
}

/** docker inspect's shape for a container. */
export function inspectContainer(c: Container) {
  const cfg = c.config;
  const r = cfg?.resources;
  const st = c.state;
  const main = c.networks[0];
  const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const p of cfg?.portBindings ?? []) {
    const key = `${p.containerPort}/${p.protocol || 'tcp'}`;
    bindings[key] = [...(bindings[key] ?? []), { HostIp: p.hostIp, HostPort: p.hostPort ? String(p.hostPort) : '' }];
  }
  return {
    Id: c.id,
    Created: iso(c.createdAt),
    Path: c.path,
    Args: c.args,
    State: {
      Status: st?.status ?? 'created',
      Running: st?.running ?? false,
      Paused: st?.paused ?? false,
      Restarting: st?.restarting ?? false,
      OOMKilled: st?.oomKilled ?? false,
      Dead: st?.dead ?? false,
      Pid: st?.pid ?? 0,
      ExitCode: st?.exitCode ?? 0,
      Error: st?.error ?? '',
      StartedAt: iso(st?.startedAt),
      FinishedAt: iso(st?.finishedAt),
    },
    Image: c.imageId,
    ResolvConfPath: c.resolvConfPath,
    HostnamePath: c.hostnamePath,
    HostsPath: c.hostsPath,
    LogPath: c.logPath,
    Name: `/${c.name}`,
    RestartCount: c.restartCount,
    Driver: 'overlay2',
    Platform: 'linux',
    HostConfig: {
      Binds: c.mounts
        .filter((m) => m.type === 'bind' || (m.type === 'volume' && cfg?.mounts.some((x) => x.target === m.target)))
        .map((m) => `${m.source}:${m.target}${m.readOnly ? ':ro' : ''}`),
      NetworkMode: cfg?.networkMode ?? 'bridge',
      PortBindings: bindings,
      RestartPolicy: {
        Name: cfg?.restartPolicy?.name ?? 'no',
        MaximumRetryCount: cfg?.restartPolicy?.maximumRetryCount ?? 0,
      },
      AutoRemove: cfg?.autoRemove ?? false,
      Privileged: cfg?.privileged ?? false,
      PublishAllPorts: cfg?.publishAllPorts ?? false,
      ReadonlyRootfs: cfg?.readOnlyRootfs ?? false,
      CapAdd: cfg?.capAdd.length ? cfg.capAdd : null,
      CapDrop: cfg?.capDrop.length ? cfg.capDrop : null,
      Dns: cfg?.dns ?? [],
      DnsOptions: cfg?.dnsOptions ?? [],
      DnsSearch: cfg?.dnsSearch ?? [],
      ExtraHosts: cfg?.extraHosts.length ? cfg.extraHosts : null,
      SecurityOpt: cfg?.securityOpt.length
        ? cfg.securityOpt.map((o) => (o.startsWith('seccomp={') ? 'seccomp=<profile>' : o))
        : null,
      Tmpfs: cfg && Object.keys(cfg.tmpfs).length ? cfg.tmpfs : undefined,
      Init: cfg?.init ?? false,
      LogConfig: { Type: 'json-file', Config: cfg?.logOptions ?? {} },
      ShmSize: Number(cfg?.shmSize || 64 * 1024 * 1024),
      Memory: Number(r?.memory ?? 0),
      MemorySwap: Number(r?.memorySwap ?? 0),
      MemoryReservation: Number(r?.memoryReservation ?? 0),
      NanoCpus: Number(r?.nanoCpus ?? 0),
      CpuShares: Number(r?.cpuShares ?? 0),
      CpusetCpus: r?.cpusetCpus ?? '',
      PidsLimit: r?.pidsLimit ? Number(r.pidsLimit) : null,
      Ulimits: cfg?.ulimits.map((u) => ({ Name: u.name, Soft: Number(u.soft), Hard: Number(u.hard) })) ?? [],
    },
    Mounts: c.mounts.map((m) => ({
      Type: m.type,
      ...(m.type === 'volume' ? { Name: m.source } : {}),
      Source: m.hostPath || m.source,
      Destination: m.target,
      ...(m.type === 'volume' ? { Driver: 'local' } : {}),
      Mode: m.type === 'bind' ? (m.readOnly ? 'ro' : '') : 'z',
      RW: !m.readOnly,
      Propagation: m.type === 'bind' ? 'rprivate' : '',
    })),
    Config: {
      Hostname: cfg?.hostname || c.id.slice(0, 12),
      Domainname: cfg?.domainname ?? '',
      User: cfg?.user ?? '',
      AttachStdin: Boolean(cfg?.openStdin),
      Tty: cfg?.tty ?? false,
      OpenStdin: cfg?.openStdin ?? false,
      StdinOnce: cfg?.stdinOnce ?? false,
      Env: cfg?.env ?? [],
      Cmd: cfg?.cmd.length ? cfg.cmd : null,
      Image: c.image,
      WorkingDir: cfg?.workingDir ?? '',
      Entrypoint: cfg?.entrypoint.length ? cfg.entrypoint : null,
      Labels: cfg?.labels ?? {},
      StopSignal: cfg?.stopSignal || undefined,
      StopTimeout: cfg?.stopTimeoutSet ? cfg.stopTimeout : undefined,
      ExposedPorts: cfg?.exposedPorts.length ? Object.fromEntries(cfg.exposedPorts.map((e) => [e, {}])) : undefined,
    },
    NetworkSettings: {
      Bridge: '',
      SandboxKey: st?.running && main ? `/run/netns/${c.id}` : '',
      Ports: portMap(c),
      Gateway: main?.networkName === 'bridge' ? main.gateway : '',
      IPAddress: main?.networkName === 'bridge' ? main.ipv4Address : '',
      IPPrefixLen: main?.networkName === 'bridge' ? main.prefixLength : 0,
      MacAddress: main?.networkName === 'bridge' ? main.macAddress : '',
      Networks: Object.fromEntries(
        c.networks.map((n) => [
          n.networkName,
          {
            Aliases: n.aliases.length ? n.aliases : null,
            NetworkID: n.networkId,
            EndpointID: n.endpointId,
            Gateway: n.gateway,
            IPAddress: n.ipv4Address,
            IPPrefixLen: n.prefixLength,
            MacAddress: n.macAddress,
          },
        ]),
      ),
    },
  };
}

/** ctrl-p ctrl-q, or docker's --detach-keys syntax ("ctrl-a,x"). */
export function parseDetachKeys(spec: string | undefined): Buffer {
  const keys = (spec || 'ctrl-p,ctrl-q').split(',').map((k) => {
    const m = /^ctrl-([a-z@[\\\]^_])$/i.exec(k.trim());
    if (m) return m[1].toLowerCase().charCodeAt(0) & 0x1f;
    if (k.length === 1) return k.charCodeAt(0);
    throw new Error(`Invalid detach keys (${spec}) provided`);
  });
  return Buffer.from(keys);
}

export interface AttachOptions {
  ref: string;
  /** Create the container first, in the same call (run): `ref` is then unused. */
  create?: CreateContainerRequest;
  execId?: string;
  start: boolean;
  stdin: boolean;
  tty: boolean;
  detachKeys?: string;
  /** Start output from the log first (docker attach has none; kept off). */
  logs?: boolean;
}

/**
 * Attaches this process's stdio to a container process: raw mode and
 * resizes on a terminal, ctrl-p ctrl-q detaches. Resolves with the exit code,
 * or undefined when the user detached.
 */
export async function attachStdio(
  tasks: ApiClient<typeof TasksService>,
  o: AttachOptions,
  ctx: { out: NodeJS.WriteStream; err: NodeJS.WriteStream },
): Promise<{ exitCode?: number; error?: string }> {
  // Each of the process's streams is made when first used (some 1-2 ms each), which a `run --rm true` never does.
  const io = {
    get stdin() {
      return process.stdin;
    },
    get out() {
      return ctx.out;
    },
    get err() {
      return ctx.err;
    },
  };
  const stream: ClientDuplexStream<AttachRequest, AttachResponse> = tasks.attach({ timeoutMs: 365 * 86400_000 });
  const detach = parseDetachKeys(o.detachKeys);
  const raw = o.tty && io.stdin.isTTY;
  let matched = 0;
  let detached = false;
  const size = () => ({ width: io.out.columns || 80, height: io.out.rows || 24 });
  const onResize = () => {
    stream.write({ part: { $case: 'resize', value: { ref: o.ref, execId: o.execId ?? '', ...size() } } });
  };
  const onData = (chunk: Buffer) => {
    if (o.tty) {
      // Detach keys are looked for in what the user types, as docker does on a TTY.
      for (const byte of chunk) {
        matched = byte === detach[matched] ? matched + 1 : byte === detach[0] ? 1 : 0;
        if (matched === detach.length) {
          detached = true;
          stream.cancel();
          return;
        }
      }
    }
    stream.write({ part: { $case: 'stdin', value: chunk } });
  };
  const onEnd = () => stream.write({ part: { $case: 'closeStdin', value: true } });
  stream.write({
    part: {
      $case: 'start',
      value: {
        ref: o.ref,
        execId: o.execId ?? '',
        stdin: o.stdin,
        stdout: true,
        stderr: true,
        logs: Boolean(o.logs),
        detachKeys: o.detachKeys ?? '',
        start: o.start,
        create: o.create,
      },
    },
  });
  if (o.stdin) {
    if (raw) io.stdin.setRawMode(true);
    io.stdin.on('data', onData);
    io.stdin.on('end', onEnd);
    io.stdin.resume();
  }
  // Only for a terminal: process.stdout is made when first touched, some 1-2 ms of a `run --rm true`.
  const resizes = Boolean(o.tty && io.out.isTTY);
  if (resizes) process.stdout.on('resize', onResize);
  let resized = false;
  try {
    return await new Promise((resolve, reject) => {
      stream.on('data', (m: AttachResponse) => {
        const p = m.part;
        if (!resized && o.tty && io.out.isTTY) {
          resized = true;
          onResize();
        }
        if (p?.$case === 'stdout') io.out.write(p.value);
        else if (p?.$case === 'stderr') (o.tty ? io.out : io.err).write(p.value);
        else if (p?.$case === 'exit') {
          // The last message: the call's trailers (some 1-2 ms behind it) add nothing to wait for.
          resolve({ exitCode: p.value.exitCode, error: p.value.error });
        }
      });
      stream.on('end', () => resolve({})); // a call that ended with no exit (detached)
      stream.on('error', (err: { code?: number }) => {
        if (detached || err.code === 1) resolve({});
        else reject(fromGrpcError(err));
      });
    });
  } finally {
    if (o.stdin) {
      io.stdin.off('data', onData);
      io.stdin.off('end', onEnd);
      if (raw) io.stdin.setRawMode(false);
      io.stdin.pause();
    }
    if (resizes) process.stdout.off('resize', onResize);
  }
}

/** docker's exit codes for a command that could not run: 127 not found, 126 not executable. */
export function startFailureCode(message: string): number {
  if (/executable file not found|no such file or directory/i.test(message)) return 127;
  if (/permission denied|not executable/i.test(message)) return 126;
  return 125;
}

/** Looks up each ref and runs `fn`; prints errors one per line as docker does and returns its exit code. */
export async function eachRef(
  refs: string[],
  err: NodeJS.WriteStream,
  fn: (ref: string) => Promise<void>,
): Promise<number> {
  let failed = false;
  for (const ref of refs) {
    try {
      await fn(ref);
    } catch (e) {
      failed = true;
      const error = e as Error & { kind?: string };
      if (error.kind === 'Unavailable') throw e;
      err.write(`Error: ${error.message}\n`);
    }
  }
  return failed ? 1 : 0;
}
