/**
 * A streaming tar reader: bytes in (any chunking), entries out, synchronously
 * and without copying file data. It reads what image layers are made of:
 * POSIX ustar and pax (path, linkpath, size, ids, times, SCHILY and LIBARCHIVE
 * xattrs, global headers), GNU long names and links, base-256 numbers. It
 * checks every header's checksum and refuses what it cannot represent
 * exactly (sparse files, multi-volume parts) rather than guess.
 *
 * Paths come out as the archive spells them; making them safe is the
 * extractor's job.
 */
import { BLOCK, type EntryType, type TarEntry, type Timespec } from './types.js';

export interface TarHandler {
  /** A new entry; its data (if any) follows through `data`, then `end`. */
  entry(e: TarEntry): void;
  data(chunk: Buffer): void;
  end(): void;
}

export class TarFormatError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TarFormatError';
  }
}

const TYPES: Record<string, EntryType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'link',
  '2': 'symlink',
  '3': 'chardev',
  '4': 'blockdev',
  '5': 'dir',
  '6': 'fifo',
};

const utf8 = new TextDecoder('utf-8', { fatal: true });

function text(buf: Buffer, what: string): string {
  try {
    return utf8.decode(buf);
  } catch {
    throw new TarFormatError(`${what} is not valid UTF-8`);
  }
}

/** A NUL-terminated field. */
function field(block: Buffer, off: number, len: number): Buffer {
  const end = block.indexOf(0, off);
  return block.subarray(off, end < 0 || end > off + len ? off + len : end);
}

/** An octal number (spaces and NULs around it), or GNU base-256 when the top bit is set. */
function numeric(block: Buffer, off: number, len: number, what: string): number {
  if (block[off] & 0x80) {
    if (block[off] === 0xff) throw new TarFormatError(`negative ${what} in a tar header`);
    let n = block[off] & 0x7f;
    for (let i = 1; i < len; i++) n = n * 256 + block[off + i];
    if (!Number.isSafeInteger(n)) throw new TarFormatError(`${what} too large in a tar header`);
    return n;
  }
  let n = 0;
  let i = off;
  const end = off + len;
  while (i < end && (block[i] === 0x20 || block[i] === 0)) i++;
  for (; i < end; i++) {
    const ch = block[i];
    if (ch === 0x20 || ch === 0) break;
    if (ch < 0x30 || ch > 0x37) throw new TarFormatError(`invalid ${what} in a tar header`);
    n = n * 8 + (ch - 0x30);
  }
  return n;
}

function checksumOk(block: Buffer): boolean {
  const want = numeric(block, 148, 8, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : block[i];
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return want === unsigned || want === signed;
}

function isZero(block: Buffer): boolean {
  for (let i = 0; i < BLOCK; i++) if (block[i] !== 0) return false;
  return true;
}

/** A pax time: seconds with an optional fraction, kept to the nanosecond. */
function paxTime(v: string, what: string): Timespec {
  const m = v.match(/^(-?\d+)(?:\.(\d+))?$/);
  if (!m) throw new TarFormatError(`invalid pax ${what} ${JSON.stringify(v)}`);
  return { sec: Number(m[1]), nsec: Number((m[2] ?? '').padEnd(9, '0').slice(0, 9)) };
}

interface Pax {
  fields: Map<string, string>;
  xattrs: Map<string, Buffer>;
}

/** pax extended header records: "LEN KEY=VALUE\n", the value raw bytes (xattr values are binary). */
function parsePax(buf: Buffer): Pax {
  const fields = new Map<string, string>();
  const xattrs = new Map<string, Buffer>();
  let off = 0;
  while (off < buf.length) {
    if (buf[off] === 0) break;
    const sp = buf.indexOf(0x20, off);
    if (sp < 0) throw new TarFormatError('invalid pax header record');
    const len = Number(buf.subarray(off, sp).toString('latin1'));
    if (!Number.isInteger(len) || len <= sp - off || off + len > buf.length || buf[off + len - 1] !== 0x0a)
      throw new TarFormatError('invalid pax header record length');
    const rec = buf.subarray(sp + 1, off + len - 1);
    const eq = rec.indexOf(0x3d);
    if (eq < 0) throw new TarFormatError('invalid pax header record');
    const key = text(rec.subarray(0, eq), 'a pax key');
    const value = rec.subarray(eq + 1);
    if (key.startsWith('SCHILY.xattr.')) xattrs.set(key.slice('SCHILY.xattr.'.length), Buffer.from(value));
    else if (key.startsWith('LIBARCHIVE.xattr.'))
      xattrs.set(
        decodeURIComponent(key.slice('LIBARCHIVE.xattr.'.length)),
        Buffer.from(value.toString('latin1'), 'base64'),
      );
    else if (key.startsWith('GNU.sparse.')) throw new TarFormatError('sparse files are not supported in layers');
    else fields.set(key, text(value, `pax ${key}`));
    off += len;
  }
  return { fields, xattrs };
}

enum State {
  Header,
  Data,
  Meta,
  Padding,
  Done,
}

export class TarReader {
  #state = State.Header;
  /** Bytes of a header (or meta data) collected across chunks. */
  #pending: Buffer[] = [];
  #pendingLen = 0;
  #remaining = 0;
  #padding = 0;
  #metaType = '';
  #longName?: string;
  #longLink?: string;
  #pax?: Pax;
  #global: Pax = { fields: new Map(), xattrs: new Map() };
  #offset = 0;
  #zeroBlocks = 0;

  constructor(private readonly handler: TarHandler) {}

  get done(): boolean {
    return this.#state === State.Done;
  }

  write(chunk: Buffer): void {
    let pos = 0;
    while (pos < chunk.length && this.#state !== State.Done) {
      switch (this.#state) {
        case State.Header: {
          const block = this.#take(chunk, pos, BLOCK);
          pos += block.consumed;
          if (block.buf) this.#header(block.buf);
          break;
        }
        case State.Data: {
          const n = Math.min(this.#remaining, chunk.length - pos);
          this.handler.data(chunk.subarray(pos, pos + n));
          pos += n;
          this.#remaining -= n;
          this.#offset += n;
          if (this.#remaining === 0) this.#endData();
          break;
        }
        case State.Meta: {
          const got = this.#take(chunk, pos, this.#remaining);
          pos += got.consumed;
          if (got.buf) this.#meta(got.buf);
          break;
        }
        case State.Padding: {
          const n = Math.min(this.#padding, chunk.length - pos);
          pos += n;
          this.#padding -= n;
          this.#offset += n;
          if (this.#padding === 0) this.#state = State.Header;
          break;
        }
      }
    }
  }

  /** The input ended: fine between entries (with or without the zero blocks), an error inside one. */
  end(): void {
    if (this.#state === State.Done) return;
    if (this.#state === State.Header && this.#pendingLen === 0 && !this.#longName && !this.#longLink && !this.#pax) {
      this.#state = State.Done;
      return;
    }
    throw new TarFormatError(`the layer is truncated (it ends inside an entry, at byte ${this.#offset})`);
  }

  /** Collects `want` bytes; returns them once all have arrived. */
  #take(chunk: Buffer, pos: number, want: number): { consumed: number; buf?: Buffer } {
    const need = want - this.#pendingLen;
    if (this.#pendingLen === 0 && chunk.length - pos >= want) {
      this.#offset += want;
      return { consumed: want, buf: chunk.subarray(pos, pos + want) };
    }
    const n = Math.min(need, chunk.length - pos);
    this.#pending.push(chunk.subarray(pos, pos + n));
    this.#pendingLen += n;
    this.#offset += n;
    if (this.#pendingLen < want) return { consumed: n };
    const buf = Buffer.concat(this.#pending, this.#pendingLen);
    this.#pending = [];
    this.#pendingLen = 0;
    return { consumed: n, buf };
  }

  #header(block: Buffer): void {
    if (isZero(block)) {
      if (++this.#zeroBlocks === 2) this.#state = State.Done;
      return;
    }
    if (this.#zeroBlocks) throw new TarFormatError(`data after an end-of-archive block at byte ${this.#offset}`);
    if (!checksumOk(block))
      throw new TarFormatError(`invalid tar header checksum at byte ${this.#offset - BLOCK}: the layer is corrupt`);
    const flag = String.fromCharCode(block[156]);
    const size = numeric(block, 124, 12, 'size');
    if (flag === 'x' || flag === 'g' || flag === 'L' || flag === 'K') {
      if (size > 16 * 1024 * 1024) throw new TarFormatError(`a ${flag} header of ${size} bytes is too large`);
      this.#metaType = flag;
      this.#remaining = size;
      this.#padding = (BLOCK - (size % BLOCK)) % BLOCK;
      this.#state = size ? State.Meta : State.Header;
      if (!size) this.#meta(Buffer.alloc(0));
      return;
    }
    if (flag === 'S') throw new TarFormatError('sparse files are not supported in layers');
    if (flag === 'V') return; // a volume label: no entry
    const type = TYPES[flag];
    if (!type) throw new TarFormatError(`unsupported tar entry type ${JSON.stringify(flag)}`);
    this.#entry(block, type, size);
  }

  #meta(buf: Buffer): void {
    this.#state = this.#padding ? State.Padding : State.Header;
    switch (this.#metaType) {
      case 'L':
        this.#longName = text(field(buf, 0, buf.length), 'a long name');
        break;
      case 'K':
        this.#longLink = text(field(buf, 0, buf.length), 'a long link name');
        break;
      case 'x':
        this.#pax = parsePax(buf);
        break;
      case 'g': {
        const g = parsePax(buf);
        for (const [k, v] of g.fields) this.#global.fields.set(k, v);
        for (const [k, v] of g.xattrs) this.#global.xattrs.set(k, v);
        break;
      }
    }
  }

  #entry(block: Buffer, type: EntryType, headerSize: number): void {
    const magic = block.subarray(257, 263).toString('latin1');
    const ustar = magic === 'ustar\0';
    let path = text(field(block, 0, 100), 'an entry name');
    if (ustar && block[345] !== 0) path = `${text(field(block, 345, 155), 'an entry name prefix')}/${path}`;
    let linkname = text(field(block, 157, 100), 'a link name');
    const mode = numeric(block, 100, 8, 'mode');
    let uid = numeric(block, 108, 8, 'uid');
    let gid = numeric(block, 116, 8, 'gid');
    let size = headerSize;
    let mtime: Timespec = { sec: numeric(block, 136, 12, 'mtime'), nsec: 0 };
    let atime: Timespec | undefined;
    const devmajor = type === 'chardev' || type === 'blockdev' ? numeric(block, 329, 8, 'devmajor') : 0;
    const devminor = type === 'chardev' || type === 'blockdev' ? numeric(block, 337, 8, 'devminor') : 0;
    const xattrs = new Map(this.#global.xattrs);

    if (this.#longName !== undefined) path = this.#longName;
    if (this.#longLink !== undefined) linkname = this.#longLink;
    for (const pax of [this.#global, this.#pax]) {
      if (!pax) continue;
      for (const [k, v] of pax.fields) {
        if (k === 'path') path = v;
        else if (k === 'linkpath') linkname = v;
        else if (k === 'size') size = paxInt(v, k);
        else if (k === 'uid') uid = paxInt(v, k);
        else if (k === 'gid') gid = paxInt(v, k);
        else if (k === 'mtime') mtime = paxTime(v, k);
        else if (k === 'atime') atime = paxTime(v, k);
      }
      if (pax !== this.#global) for (const [k, v] of pax.xattrs) xattrs.set(k, v);
    }
    this.#longName = this.#longLink = this.#pax = undefined;

    if (type === 'file' && path.endsWith('/')) type = 'dir';
    // Only regular files carry data: like Go's archive/tar (which wrote most layers), the size of
    // links, directories, devices and fifos is ignored.
    const dataSize = type === 'file' ? size : 0;
    this.handler.entry({
      path,
      type,
      mode: mode & 0o7777,
      uid,
      gid,
      size: dataSize,
      mtime,
      atime,
      linkname,
      devmajor,
      devminor,
      xattrs,
    });
    this.#remaining = dataSize;
    this.#padding = (BLOCK - (dataSize % BLOCK)) % BLOCK;
    if (this.#remaining > 0) this.#state = State.Data;
    else this.#endData();
  }

  #endData(): void {
    this.handler.end();
    this.#state = this.#padding ? State.Padding : State.Header;
  }
}

function paxInt(v: string, what: string): number {
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v)))
    throw new TarFormatError(`invalid pax ${what} ${JSON.stringify(v)}`);
  return Number(v);
}
