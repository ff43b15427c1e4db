/**
 * Host port reservations: a socket bound (not listening) to the published
 * address and port, held as long as the port map exists. Another program that
 * wants the port gets EADDRINUSE instead of silently losing its traffic to a
 * DNAT rule, and a port already taken is refused at publish time. With port 0
 * the kernel picks a free one from its ephemeral range.
 */
import koffi from 'koffi';
import { libc, SysError } from './libc.js';
import { ipv4Bytes } from './netlink.js';

const c = {
  socket: libc.func('int socket(int domain, int type, int protocol)'),
  bind: libc.func('int bind(int fd, const void *addr, uint32_t len)'),
  getsockname: libc.func('int getsockname(int fd, _Out_ void *addr, _Inout_ uint32_t *len)'),
  close: libc.func('int close(int fd)'),
};

const AF_INET = 2;
const SOCK_STREAM = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0x80000;

export interface PortReservation {
  fd: number;
  port: number;
}

/** Binds `protocol` `ip:port` (port 0: any free one); throws SysError EADDRINUSE when taken. */
export function reservePort(protocol: 'tcp' | 'udp', ip: string, port: number): PortReservation {
  const fd = c.socket(AF_INET, (protocol === 'tcp' ? SOCK_STREAM : SOCK_DGRAM) | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new SysError('socket', koffi.errno(), protocol);
  try {
    const sa = Buffer.alloc(16);
    sa.writeUInt16LE(AF_INET, 0);
    sa.writeUInt16BE(port, 2);
    ipv4Bytes(ip || '0.0.0.0').copy(sa, 4);
    if (c.bind(fd, sa, 16) < 0) throw new SysError('bind', koffi.errno(), `${protocol} ${ip || '0.0.0.0'}:${port}`);
    const out = Buffer.alloc(16);
    const len = [16];
    if (c.getsockname(fd, out, len) < 0) throw new SysError('getsockname', koffi.errno(), protocol);
    return { fd, port: out.readUInt16BE(2) };
  } catch (err) {
    c.close(fd);
    throw err;
  }
}

export function releasePort(r: PortReservation): void {
  c.close(r.fd);
}
