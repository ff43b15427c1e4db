/** Linux capabilities by name (capability(7)), and docker's default set. */

export const CAPABILITIES = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE',
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER',
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT',
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL',
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM',
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE',
] as const;

export type CapabilityName = (typeof CAPABILITIES)[number];

/** docker's default capabilities (moby oci/caps/defaults.go). */
export const DEFAULT_CAPABILITIES: CapabilityName[] = [
  'CAP_CHOWN',
  'CAP_DAC_OVERRIDE',
  'CAP_FSETID',
  'CAP_FOWNER',
  'CAP_MKNOD',
  'CAP_NET_RAW',
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETFCAP',
  'CAP_SETPCAP',
  'CAP_NET_BIND_SERVICE',
  'CAP_SYS_CHROOT',
  'CAP_KILL',
  'CAP_AUDIT_WRITE',
];

/** `NET_ADMIN`, `cap_net_admin` and `CAP_NET_ADMIN` all name the same capability; `ALL` is every one. */
export function normalizeCapability(name: string): CapabilityName | 'ALL' | undefined {
  const upper = name.toUpperCase();
  if (upper === 'ALL') return 'ALL';
  const full = upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
  return (CAPABILITIES as readonly string[]).includes(full) ? (full as CapabilityName) : undefined;
}

export function capabilityNumber(name: string): number {
  const n = CAPABILITIES.indexOf(name as CapabilityName);
  if (n < 0) throw new Error(`unknown capability ${name}`);
  return n;
}

/** A set of capability names as the 64-bit mask the kernel uses. */
export function capabilityMask(names: string[] = []): bigint {
  let mask = 0n;
  for (const n of names) mask |= 1n << BigInt(capabilityNumber(n));
  return mask;
}

/** docker's --cap-add/--cap-drop over a base set: drop first, then add; ALL in either applies to all. */
export function adjustCapabilities(base: readonly string[], add: string[] = [], drop: string[] = []): CapabilityName[] {
  const norm = (list: string[]) =>
    list.map((c) => {
      const n = normalizeCapability(c);
      if (!n) throw new Error(`unknown capability: "${c}"`);
      return n;
    });
  const adds = norm(add);
  const drops = norm(drop);
  let caps = new Set<CapabilityName>(base as CapabilityName[]);
  if (drops.includes('ALL')) caps = new Set();
  for (const d of drops) if (d !== 'ALL') caps.delete(d);
  if (adds.includes('ALL')) caps = new Set(CAPABILITIES);
  for (const a of adds) if (a !== 'ALL') caps.add(a);
  return CAPABILITIES.filter((c) => caps.has(c));
}
