/** Limits as ctr states them (docker's flags in kernel units), independent of the cgroup version. */
export interface Resources {
  /** Bytes; 0 = unlimited. */
  memory?: number;
  /** Memory + swap in bytes (docker --memory-swap); -1 = unlimited swap. */
  memorySwap?: number;
  memoryReservation?: number;
  /** CFS quota and period in µs (docker --cpus=1.5 → 150000/100000). */
  cpuQuota?: number;
  cpuPeriod?: number;
  /** v1 shares (docker --cpu-shares, 2..262144). */
  cpuShares?: number;
  cpusetCpus?: string;
  cpusetMems?: string;
  /** Maximum number of tasks; 0 or -1 = unlimited. */
  pidsLimit?: number;
}

/** docker's --cpus: 1.5 → quota 150000 µs per 100000 µs period. */
export function cpusToQuota(cpus: number, period = 100_000): { cpuQuota: number; cpuPeriod: number } {
  return { cpuQuota: Math.round(cpus * period), cpuPeriod: period };
}

/** v1 shares to v2 weight, as runc converts them (2..262144 → 1..10000). */
export function sharesToWeight(shares: number): number {
  return shares === 0 ? 100 : 1 + Math.floor(((shares - 2) * 9999) / 262142);
}

export interface Stats {
  /** ns of CPU used by the group. */
  cpuUsageNanos: bigint;
  cpuThrottledPeriods: number;
  cpuThrottledNanos: bigint;
  memoryUsage: number;
  /** 0 when unlimited. */
  memoryLimit: number;
  memoryCache: number;
  pidsCurrent: number;
  /** 0 when unlimited. */
  pidsLimit: number;
  /** Times the kernel's OOM killer killed a task of the group. */
  oomKills: number;
}
