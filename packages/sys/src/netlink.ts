/**
 * rtnetlink: links, addresses and routes, spoken directly to the kernel as
 * iproute2 and vishvananda/netlink do, not by spawning `ip`. Requests are
 * synchronous (a send, then receives until the kernel's ACK), which is how
 * the kernel answers them anyway: microseconds, no round trip through libuv.
 *
 * A socket belongs to the network namespace its thread was in when it was
 * opened: open one inside `inNetns()` to configure a container's namespace.
 */
import koffi from 'koffi';
import { libc, SysError } from './libc.js';

const c = {
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  bind: libc.func('int bind(int fd, const void *addr, uint32_t len)'),
  send: libc.func('long send(int fd, const void *buf, size_t len, int flags)'),
  recv: libc.func('long recv(int fd, _Out_ void *buf, size_t len, int flags)'),
  close: libc.func('int close(int fd)'),
  setsockopt: libc.func('int setsockopt(int fd, int level, int name, const void *val, uint32_t len)'),
};

const AF_NETLINK = 16;
const AF_INET = 2;
const SOCK_RAW = 3;
const SOCK_CLOEXEC = 0x80000;
const NETLINK_ROUTE = 0;
const SOL_NETLINK = 270;
const NETLINK_EXT_ACK = 11;

const RTM = { NEWLINK: 16, DELLINK: 17, GETLINK: 18, NEWADDR: 20, GETADDR: 22, NEWROUTE: 24 };
const NLM_F = { REQUEST: 1, MULTI: 2, ACK: 4, ROOT: 0x100, MATCH: 0x200, EXCL: 0x200, CREATE: 0x400 };
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const IFLA = {
  ADDRESS: 1,
  IFNAME: 3,
  MTU: 4,
  MASTER: 10,
  LINKINFO: 18,
  NET_NS_FD: 28,
};
const IFLA_INFO = { KIND: 1, DATA: 2 };
const VETH_INFO_PEER = 1;
const IFA = { ADDRESS: 1, LOCAL: 2, BROADCAST: 4 };
const RTA = { OIF: 4, GATEWAY: 5 };
const IFF_UP = 1;
const NLA_F_NESTED = 0x8000;

/** One netlink attribute: a number payload is u32, a string is NUL-terminated. */
type Attr = { type: number; data: Buffer | string | number | Attr[] };

function encodeAttr(a: Attr): Buffer {
  let payload: Buffer;
  let type = a.type;
  if (typeof a.data === 'number') {
    payload = Buffer.alloc(4);
    payload.writeUInt32LE(a.data >>> 0);
  } else if (typeof a.data === 'string') {
    payload = Buffer.from(`${a.data}\0`);
  } else if (Array.isArray(a.data)) {
    payload = Buffer.concat(a.data.map(encodeAttr));
    type |= NLA_F_NESTED;
  } else payload = a.data;
  const len = 4 + payload.length;
  const out = Buffer.alloc(align(len));
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  payload.copy(out, 4);
  return out;
}

const align = (n: number) => (n + 3) & ~3;

function parseAttrs(buf: Buffer, offset: number, end: number): Map<number, Buffer> {
  const attrs = new Map<number, Buffer>();
  while (offset + 4 <= end) {
    const len = buf.readUInt16LE(offset);
    if (len < 4) break;
    attrs.set(buf.readUInt16LE(offset + 2) & ~NLA_F_NESTED, buf.subarray(offset + 4, offset + len));
    offset += align(len);
  }
  return attrs;
}

function ifinfomsg(index = 0, flags = 0, change = 0): Buffer {
  const b = Buffer.alloc(16);
  b.writeUInt8(0, 0); // AF_UNSPEC
  b.writeInt32LE(index, 4);
  b.writeUInt32LE(flags, 8);
  b.writeUInt32LE(change, 12);
  return b;
}

export function ipv4Bytes(ip: string): Buffer {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`not an IPv4 address: ${ip}`);
  }
  return Buffer.from(parts);
}

export function macBytes(mac: string): Buffer {
  const b = Buffer.from(mac.split(':').map((h) => Number.parseInt(h, 16)));
  if (b.length !== 6 || !/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/i.test(mac)) throw new Error(`not a MAC address: ${mac}`);
  return b;
}

export interface LinkInfo {
  index: number;
  name: string;
  up: boolean;
  mtu: number;
  master: number;
  mac: string;
}

export interface VethOptions {
  /** Host-side name. */
  name: string;
  /** The peer's name inside `peerNetnsFd`'s namespace. */
  peerName: string;
  /** An fd of the namespace the peer is created in. */
  peerNetnsFd: number;
  mtu?: number;
  /** The peer's MAC address. */
  peerMac?: string;
  /** Index of the bridge the host side joins. */
  master?: number;
}

/** A deletion's failure: false when the link was gone already (it went between lookup and delete). */
function goneAlready(err: unknown): false {
  if ((err as SysError).code === 'ENODEV') return false;
  throw err;
}

/** A NETLINK_ROUTE socket of the namespace it was opened in. Close it when done. */
export class Netlink {
  readonly #fd: number;
  #seq = Math.floor(Math.random() * 0x7fffffff);
  readonly #buf = Buffer.alloc(64 * 1024);

  constructor() {
    const fd = c.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (fd < 0) throw new SysError('socket', koffi.errno(), 'AF_NETLINK');
    this.#fd = fd;
    const one = Buffer.alloc(4);
    one.writeUInt32LE(1);
    // Extended ACKs: the kernel says which attribute it refused (best effort).
    c.setsockopt(fd, SOL_NETLINK, NETLINK_EXT_ACK, one, 4);
    const sa = Buffer.alloc(12);
    sa.writeUInt16LE(AF_NETLINK, 0);
    if (c.bind(fd, sa, sa.length) < 0) {
      const errno = koffi.errno();
      c.close(fd);
      throw new SysError('bind', errno, 'AF_NETLINK');
    }
  }

  close(): void {
    c.close(this.#fd);
  }

  /** Sends one request and reads every answer until its ACK (or DONE, for a dump). */
  #request(type: number, flags: number, body: Buffer, what: string): Buffer[] {
    const [seq, msg] = this.#message(type, flags, body);
    if (Number(c.send(this.#fd, msg, msg.length, 0)) < 0) throw new SysError('netlink send', koffi.errno(), what);
    return this.#answers(seq, what);
  }

  /**
   * The same, with the send made on a thread of libuv's pool: the kernel
   * carries a request out within the send, and some (a veth's deletion waits
   * out RCU grace periods, 10–20 ms) would hold the event loop that long.
   * The answers are queued by the time the send returns.
   */
  async #requestOffThread(type: number, flags: number, body: Buffer, what: string): Promise<Buffer[]> {
    const [seq, msg] = this.#message(type, flags, body);
    const sent = await new Promise<number>((resolve, reject) =>
      c.send.async(this.#fd, msg, msg.length, 0, (err: unknown, n: number | bigint) =>
        err ? reject(err) : resolve(Number(n)),
      ),
    );
    if (sent < 0) throw new SysError('netlink send', koffi.errno(), what);
    return this.#answers(seq, what);
  }

  #message(type: number, flags: number, body: Buffer): [number, Buffer] {
    const seq = ++this.#seq;
    const msg = Buffer.alloc(16 + body.length);
    msg.writeUInt32LE(msg.length, 0);
    msg.writeUInt16LE(type, 4);
    msg.writeUInt16LE(flags | NLM_F.REQUEST | NLM_F.ACK, 6);
    msg.writeUInt32LE(seq, 8);
    body.copy(msg, 16);
    return [seq, msg];
  }

  #answers(seq: number, what: string): Buffer[] {
    const answers: Buffer[] = [];
    for (;;) {
      const n = Number(c.recv(this.#fd, this.#buf, this.#buf.length, 0));
      if (n < 0) throw new SysError('netlink recv', koffi.errno(), what);
      let off = 0;
      while (off + 16 <= n) {
        const len = this.#buf.readUInt32LE(off);
        const mtype = this.#buf.readUInt16LE(off + 4);
        const mseq = this.#buf.readUInt32LE(off + 8);
        if (len < 16) break;
        if (mseq === seq) {
          if (mtype === NLMSG_ERROR) {
            const err = -this.#buf.readInt32LE(off + 16);
            if (err === 0) return answers;
            throw new SysError('netlink', err, what);
          }
          if (mtype === NLMSG_DONE) return answers;
          answers.push(Buffer.from(this.#buf.subarray(off + 16, off + len)));
        }
        off += align(len);
      }
    }
  }

  /** Index of a link of this namespace; 0 when there is none. */
  linkIndex(name: string): number {
    try {
      const [m] = this.#request(
        RTM.GETLINK,
        0,
        Buffer.concat([ifinfomsg(), encodeAttr({ type: IFLA.IFNAME, data: name })]),
        `link ${name}`,
      );
      return m ? m.readInt32LE(4) : 0;
    } catch (err) {
      if ((err as SysError).code === 'ENODEV') return 0;
      throw err;
    }
  }

  links(): LinkInfo[] {
    return this.#request(RTM.GETLINK, NLM_F.ROOT | NLM_F.MATCH, ifinfomsg(), 'list links').map((m) => {
      const attrs = parseAttrs(m, 16, m.length);
      const mac = attrs.get(IFLA.ADDRESS);
      return {
        index: m.readInt32LE(4),
        name: attrs.get(IFLA.IFNAME)?.toString('utf8').replace(/\0.*$/, '') ?? '',
        up: (m.readUInt32LE(8) & IFF_UP) !== 0,
        mtu: attrs.get(IFLA.MTU)?.readUInt32LE(0) ?? 0,
        master: attrs.get(IFLA.MASTER)?.readUInt32LE(0) ?? 0,
        mac: mac ? [...mac].map((b) => b.toString(16).padStart(2, '0')).join(':') : '',
      };
    });
  }

  addBridge(name: string, opts: { mtu?: number; mac?: string } = {}): void {
    const attrs: Attr[] = [
      { type: IFLA.IFNAME, data: name },
      { type: IFLA.LINKINFO, data: [{ type: IFLA_INFO.KIND, data: 'bridge' }] },
    ];
    if (opts.mtu) attrs.push({ type: IFLA.MTU, data: opts.mtu });
    // A fixed MAC: a bridge otherwise takes the lowest of its ports' and changes as they come and go.
    if (opts.mac) attrs.push({ type: IFLA.ADDRESS, data: macBytes(opts.mac) });
    this.#newLink(attrs, `add bridge ${name}`);
  }

  /** A veth pair: `name` here (on `master` if given), `peerName` in the peer namespace. */
  addVeth(o: VethOptions): void {
    const peer: Attr[] = [
      { type: IFLA.IFNAME, data: o.peerName },
      { type: IFLA.NET_NS_FD, data: o.peerNetnsFd },
    ];
    if (o.mtu) peer.push({ type: IFLA.MTU, data: o.mtu });
    if (o.peerMac) peer.push({ type: IFLA.ADDRESS, data: macBytes(o.peerMac) });
    const peerBody = Buffer.concat([ifinfomsg(), ...peer.map(encodeAttr)]);
    const attrs: Attr[] = [
      { type: IFLA.IFNAME, data: o.name },
      {
        type: IFLA.LINKINFO,
        data: [
          { type: IFLA_INFO.KIND, data: 'veth' },
          { type: IFLA_INFO.DATA, data: [{ type: VETH_INFO_PEER, data: peerBody }] },
        ],
      },
    ];
    if (o.mtu) attrs.push({ type: IFLA.MTU, data: o.mtu });
    if (o.master) attrs.push({ type: IFLA.MASTER, data: o.master });
    this.#newLink(attrs, `add veth ${o.name}`);
  }

  #newLink(attrs: Attr[], what: string): void {
    this.#request(RTM.NEWLINK, NLM_F.CREATE | NLM_F.EXCL, Buffer.concat([ifinfomsg(), ...attrs.map(encodeAttr)]), what);
  }

  /**
   * Deletes a link by name off the event loop (see #requestOffThread); a
   * missing one is fine (false). The socket must not serve another request
   * until this one settles: use a socket of its own.
   */
  async deleteLinkOffThread(name: string): Promise<boolean> {
    const index = this.linkIndex(name);
    if (!index) return false;
    return this.#requestOffThread(RTM.DELLINK, 0, ifinfomsg(index), `delete link ${name}`).then(
      () => true,
      goneAlready,
    );
  }

  /** Deletes a link by name; a missing one is fine (returns false). */
  deleteLink(name: string): boolean {
    const index = this.linkIndex(name);
    if (!index) return false;
    try {
      this.#request(RTM.DELLINK, 0, ifinfomsg(index), `delete link ${name}`);
      return true;
    } catch (err) {
      return goneAlready(err);
    }
  }

  setUp(name: string): void {
    const index = this.#mustIndex(name);
    this.#request(RTM.NEWLINK, 0, ifinfomsg(index, IFF_UP, IFF_UP), `set ${name} up`);
  }

  #mustIndex(name: string): number {
    const index = this.linkIndex(name);
    if (!index) throw new SysError('netlink', 19 /* ENODEV */, `link ${name}`);
    return index;
  }

  /** Adds `ip/prefix` to a link (with its broadcast address); an address already there is fine. */
  addAddress(name: string, ip: string, prefix: number): void {
    const index = this.#mustIndex(name);
    const head = Buffer.alloc(8);
    head.writeUInt8(AF_INET, 0);
    head.writeUInt8(prefix, 1);
    head.writeUInt32LE(index, 4);
    const addr = ipv4Bytes(ip);
    const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
    const bcast = Buffer.alloc(4);
    bcast.writeUInt32BE((addr.readUInt32BE(0) | ~mask) >>> 0);
    const attrs: Attr[] = [
      { type: IFA.LOCAL, data: addr },
      { type: IFA.ADDRESS, data: addr },
    ];
    if (prefix < 31) attrs.push({ type: IFA.BROADCAST, data: bcast });
    try {
      this.#request(
        RTM.NEWADDR,
        NLM_F.CREATE | NLM_F.EXCL,
        Buffer.concat([head, ...attrs.map(encodeAttr)]),
        `add ${ip}/${prefix} to ${name}`,
      );
    } catch (err) {
      if ((err as SysError).code !== 'EEXIST') throw err;
    }
  }

  /** IPv4 addresses of a link, as `ip/prefix`. */
  addresses(name: string): string[] {
    const index = this.linkIndex(name);
    if (!index) return [];
    return this.allAddresses()
      .filter((a) => a.index === index)
      .map((a) => a.address);
  }

  /** Every IPv4 address of the namespace, as `ip/prefix` with its link's index. */
  allAddresses(): { index: number; address: string }[] {
    const head = Buffer.alloc(8);
    head.writeUInt8(AF_INET, 0);
    return this.#request(RTM.GETADDR, NLM_F.ROOT | NLM_F.MATCH, head, 'list addresses').flatMap((m) => {
      const local = parseAttrs(m, 8, m.length).get(IFA.LOCAL);
      return local ? [{ index: m.readUInt32LE(4), address: `${[...local].join('.')}/${m.readUInt8(1)}` }] : [];
    });
  }

  /** A default route through `gateway` on link `name`. */
  addDefaultRoute(name: string, gateway: string): void {
    const index = this.#mustIndex(name);
    const head = Buffer.alloc(12);
    head.writeUInt8(AF_INET, 0);
    head.writeUInt8(0, 1); // dst_len
    head.writeUInt8(254, 4); // RT_TABLE_MAIN
    head.writeUInt8(3, 5); // RTPROT_BOOT
    head.writeUInt8(0, 6); // RT_SCOPE_UNIVERSE
    head.writeUInt8(1, 7); // RTN_UNICAST
    const attrs: Attr[] = [
      { type: RTA.GATEWAY, data: ipv4Bytes(gateway) },
      { type: RTA.OIF, data: index },
    ];
    this.#request(
      RTM.NEWROUTE,
      NLM_F.CREATE | NLM_F.EXCL,
      Buffer.concat([head, ...attrs.map(encodeAttr)]),
      `default route via ${gateway}`,
    );
  }
}
