/**
 * Tar headers the way Go's archive/tar writes layers: ustar where the fields
 * fit, a pax header before the entry where they do not (long or non-ASCII
 * names, big ids and sizes, sub-second times, xattrs as SCHILY.xattr).
 */
import { BLOCK, type EntryType, type TarEntry } from './types.js';

const FLAGS: Record<EntryType, string> = {
  file: '0',
  link: '1',
  symlink: '2',
  chardev: '3',
  blockdev: '4',
  dir: '5',
  fifo: '6',
};

export type EntryInit = Partial<TarEntry> & Pick<TarEntry, 'path' | 'type'>;

function octal(block: Buffer, off: number, len: number, n: number): void {
  block.write(`${n.toString(8).padStart(len - 1, '0')}\0`, off, len, 'latin1');
}

function fitsOctal(n: number, len: number): boolean {
  return Number.isInteger(n) && n >= 0 && n < 8 ** (len - 1);
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7e) return false;
  return true;
}

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

function block(name: string, flag: string, e: TarEntry, size: number): Buffer {
  const b = Buffer.alloc(BLOCK);
  b.write(name, 0, 100, 'utf8');
  octal(b, 100, 8, e.mode & 0o7777);
  octal(b, 108, 8, fitsOctal(e.uid, 8) ? e.uid : 0);
  octal(b, 116, 8, fitsOctal(e.gid, 8) ? e.gid : 0);
  octal(b, 124, 12, size);
  octal(b, 136, 12, fitsOctal(e.mtime.sec, 12) ? e.mtime.sec : 0);
  b.write(flag, 156, 1, 'latin1');
  b.write(e.linkname, 157, 100, 'utf8');
  b.write('ustar\x0000', 257, 8, 'latin1');
  octal(b, 329, 8, e.devmajor);
  octal(b, 337, 8, e.devminor);
  b.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += b[i];
  b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return b;
}

/** The header block(s) of one entry; its data and padding() follow for files. */
export function header(init: EntryInit): Buffer {
  const e: TarEntry = {
    mode: init.type === 'dir' ? 0o755 : init.type === 'symlink' ? 0o777 : 0o644,
    uid: 0,
    gid: 0,
    size: 0,
    mtime: { sec: 0, nsec: 0 },
    linkname: '',
    devmajor: 0,
    devminor: 0,
    xattrs: new Map(),
    ...init,
  };
  const size = e.type === 'file' ? e.size : 0;
  const records: Buffer[] = [];
  const pathBytes = Buffer.byteLength(e.path);
  if (pathBytes > 100 || !isAscii(e.path)) records.push(paxRecord('path', Buffer.from(e.path)));
  if (Buffer.byteLength(e.linkname) > 100 || !isAscii(e.linkname))
    records.push(paxRecord('linkpath', Buffer.from(e.linkname)));
  if (!fitsOctal(e.uid, 8)) records.push(paxRecord('uid', Buffer.from(String(e.uid))));
  if (!fitsOctal(e.gid, 8)) records.push(paxRecord('gid', Buffer.from(String(e.gid))));
  if (!fitsOctal(size, 12)) records.push(paxRecord('size', Buffer.from(String(size))));
  if (e.mtime.nsec || !fitsOctal(e.mtime.sec, 12))
    records.push(
      paxRecord(
        'mtime',
        Buffer.from(`${e.mtime.sec}${e.mtime.nsec ? `.${String(e.mtime.nsec).padStart(9, '0')}` : ''}`),
      ),
    );
  for (const [k, v] of [...e.xattrs].sort(([a], [b]) => (a < b ? -1 : 1)))
    records.push(paxRecord(`SCHILY.xattr.${k}`, v));
  const main = block(records.length ? e.path.slice(0, 100) : e.path, FLAGS[e.type], e, fitsOctal(size, 12) ? size : 0);
  if (!records.length) return main;
  const pax = Buffer.concat(records);
  const paxHeader = block(
    `PaxHeaders/${e.path.slice(0, 80)}`,
    'x',
    { ...e, mode: 0o644, linkname: '', devmajor: 0, devminor: 0 },
    pax.length,
  );
  return Buffer.concat([paxHeader, pax, padding(pax.length), main]);
}

/** Zero bytes up to the next block boundary after `size` bytes of data. */
export function padding(size: number): Buffer {
  return Buffer.alloc((BLOCK - (size % BLOCK)) % BLOCK);
}

/** The end-of-archive marker: two zero blocks. */
export function trailer(): Buffer {
  return Buffer.alloc(2 * BLOCK);
}

/** A whole archive in memory (tests and small layers). */
export function pack(entries: Array<EntryInit & { data?: Buffer | string }>): Buffer {
  const parts: Buffer[] = [];
  for (const { data, ...e } of entries) {
    const body = data === undefined ? Buffer.alloc(0) : Buffer.from(data);
    parts.push(header({ ...e, size: body.length }), body, padding(body.length));
  }
  parts.push(trailer());
  return Buffer.concat(parts);
}
