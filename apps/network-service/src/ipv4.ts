/** IPv4 addresses and subnets as 32-bit numbers. */
import { invalidArgument } from '@ctr/common/errors';

const OCTETS = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

export function parseIp(text: string, what = 'IP address'): number {
  const m = OCTETS.exec(text);
  if (!m || m.slice(1).some((o) => Number(o) > 255 || (o.length > 1 && o.startsWith('0')))) {
    throw invalidArgument(`invalid ${what}: ${JSON.stringify(text)}`);
  }
  return ((Number(m[1]) << 24) | (Number(m[2]) << 16) | (Number(m[3]) << 8) | Number(m[4])) >>> 0;
}

export const formatIp = (n: number) => [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');

export const isLoopback = (ip: string) => ip.startsWith('127.');

export class Subnet {
  readonly mask: number;
  private constructor(
    /** The network address. */
    readonly base: number,
    readonly prefix: number,
  ) {
    this.mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  }

  /** Parses `a.b.c.d/n`; host bits must be zero, as docker requires. */
  static parse(text: string): Subnet {
    const [ip, len, extra] = text.split('/');
    const prefix = Number(len);
    if (extra !== undefined || !/^\d{1,2}$/.test(len ?? '') || prefix > 32) {
      throw invalidArgument(`invalid subnet ${JSON.stringify(text)}: expected a CIDR such as 100.64.1.0/24`);
    }
    const addr = parseIp(ip, 'subnet');
    const s = new Subnet(addr, prefix);
    if ((addr & s.mask) >>> 0 !== addr) {
      throw invalidArgument(`invalid subnet ${text}: it should be ${formatIp((addr & s.mask) >>> 0)}/${prefix}`);
    }
    return s;
  }

  static of(base: number, prefix: number): Subnet {
    return new Subnet(base, prefix);
  }

  get size(): number {
    return 2 ** (32 - this.prefix);
  }
  get broadcast(): number {
    return (this.base + this.size - 1) >>> 0;
  }
  /** First and last addresses a host may take (network and broadcast excluded below /31). */
  get firstHost(): number {
    return this.prefix >= 31 ? this.base : this.base + 1;
  }
  get lastHost(): number {
    return this.prefix >= 31 ? this.broadcast : this.broadcast - 1;
  }

  contains(ip: number): boolean {
    return (ip & this.mask) >>> 0 === this.base;
  }

  overlaps(other: Subnet): boolean {
    const prefix = Math.min(this.prefix, other.prefix);
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    return (this.base & mask) >>> 0 === (other.base & mask) >>> 0;
  }

  toString(): string {
    return `${formatIp(this.base)}/${this.prefix}`;
  }
}

/** docker's MAC for an address: 02:42 then the address's four bytes. */
export function macForIp(ip: number): string {
  return [
    '02',
    '42',
    ...[ip >>> 24, (ip >>> 16) & 255, (ip >>> 8) & 255, ip & 255].map((b) => b.toString(16).padStart(2, '0')),
  ].join(':');
}
