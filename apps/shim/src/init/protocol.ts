/**
 * The shim's half of native/src/protocol.h: plan records and sync messages.
 * Keep the numbers in step with that header; it documents the handshake.
 */

export const PlanTag = {
  NAMESPACES: 1,
  JOIN_NS: 2,
  UID_MAP: 3,
  GID_MAP: 4,
  ROOTFS: 10,
  ROOTFS_READONLY: 11,
  ROOTFS_PROPAGATION: 12,
  MOUNT: 13,
  MASKED_PATH: 14,
  READONLY_PATH: 15,
  DEVICE: 16,
  SYMLINK: 17,
  HOSTNAME: 20,
  RLIMIT: 21,
  SYSCTL: 22,
  OOM_SCORE_ADJ: 23,
  UID: 30,
  GID: 31,
  GROUP: 32,
  CAPS: 33,
  NO_NEW_PRIVS: 34,
  SECCOMP_DEFAULT: 40,
  SECCOMP_ARCH: 41,
  SECCOMP_RULE: 42,
  SECCOMP_BPF: 43,
  ARG: 50,
  ENV: 51,
  CWD: 52,
  PARENT_DEATH_SIGNAL: 53,
  TERMINAL: 54,
} as const;

export const SyncType = {
  CHILD_PID: 1,
  PLACED: 2,
  READY: 3,
  START: 4,
  EXITED: 5,
  ERROR: 6,
} as const;

export const Stage: Record<number, string> = {
  1: 'plan',
  2: 'namespaces',
  3: 'sync',
  4: 'rootfs',
  5: 'mounts',
  6: 'devices',
  7: 'pivot_root',
  8: 'masked paths',
  9: 'hostname',
  10: 'rlimits',
  11: 'user',
  12: 'capabilities',
  13: 'seccomp',
  14: 'cwd',
  15: 'exec',
  16: 'terminal',
};
export const STAGE_EXEC = 15;

/** sizeof(struct sync_msg): u32 type, i32 value, u32 stage, char text[480]. */
export const SYNC_MSG_SIZE = 12 + 480;

export interface SyncMessage {
  type: number;
  value: number;
  stage: number;
  text: string;
}

export function encodeSync(type: number, value = 0): Buffer {
  const b = Buffer.alloc(SYNC_MSG_SIZE);
  b.writeUInt32LE(type, 0);
  b.writeInt32LE(value, 4);
  return b;
}

export function decodeSync(b: Buffer): SyncMessage {
  const text = b.subarray(12, SYNC_MSG_SIZE);
  const end = text.indexOf(0);
  return {
    type: b.readUInt32LE(0),
    value: b.readInt32LE(4),
    stage: b.readUInt32LE(8),
    text: text.subarray(0, end < 0 ? text.length : end).toString(),
  };
}

/** Clone flags (sched.h). */
export const CLONE = {
  NEWNS: 0x00020000,
  NEWCGROUP: 0x02000000,
  NEWUTS: 0x04000000,
  NEWIPC: 0x08000000,
  NEWUSER: 0x10000000,
  NEWPID: 0x20000000,
  NEWNET: 0x40000000,
  NEWTIME: 0x00000080,
} as const;

/** Builds a plan: records of u16 tag, u32 length, payload (little-endian, strings NUL-terminated). */
export class PlanWriter {
  // One buffer written in place: a default seccomp profile alone is some 350
  // records, and a few small Buffers per field made planning take milliseconds.
  #buf = Buffer.allocUnsafe(64 * 1024);
  #len = 0;

  #reserve(n: number): number {
    const at = this.#len;
    if (at + n > this.#buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.#buf.length * 2, at + n));
      this.#buf.copy(grown, 0, 0, at);
      this.#buf = grown;
    }
    this.#len = at + n;
    return at;
  }

  record(
    tag: number,
    ...fields: (Buffer | string | { u32: number } | { i32: number } | { u64: bigint | number })[]
  ): this {
    const head = this.#reserve(6);
    for (const f of fields) {
      if (Buffer.isBuffer(f)) {
        f.copy(this.#buf, this.#reserve(f.length));
      } else if (typeof f === 'string') {
        const n = Buffer.byteLength(f);
        const at = this.#reserve(n + 1);
        this.#buf.write(f, at, n, 'utf8');
        this.#buf[at + n] = 0;
      } else if ('u32' in f) {
        this.#buf.writeUInt32LE(f.u32 >>> 0, this.#reserve(4));
      } else if ('i32' in f) {
        this.#buf.writeInt32LE(f.i32, this.#reserve(4));
      } else {
        this.#buf.writeBigUInt64LE(BigInt.asUintN(64, BigInt(f.u64)), this.#reserve(8));
      }
    }
    this.#buf.writeUInt16LE(tag, head);
    this.#buf.writeUInt32LE(this.#len - head - 6, head + 2);
    return this;
  }

  finish(): Buffer {
    return Buffer.from(this.#buf.subarray(0, this.#len));
  }
}
