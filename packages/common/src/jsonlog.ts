/**
 * docker's json-file log driver: one JSON object per line,
 *   {"log":"hello\n","stream":"stdout","time":"2026-11-23T10:00:00.000000001Z"}
 * rotated by rename when the next line would pass maxSize: `x.log` becomes
 * `x.log.1`, `x.log.1` becomes `x.log.2`, up to maxFiles files in all (the live
 * one included); with compress the rotated files are gzipped (`x.log.1.gz`).
 * Output is split into lines; a line longer than 16 KiB is written in 16 KiB
 * parts, the way docker does, so one chatty process cannot hold a whole line in
 * memory.
 */
import { EventEmitter } from 'node:events';
import { closeSync, existsSync, fstatSync, openSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';

/** zlib, loaded when a log is compressed or read compressed: not with every shim (some 1 ms of its boot). */
const zlib = () => process.getBuiltinModule('node:zlib');

export type StreamName = 'stdout' | 'stderr';

export interface LogEntry {
  stream: StreamName;
  /** The line, with its newline when it had one. */
  log: string;
  time: Date;
}

export interface JsonLogOptions {
  path: string;
  /** Bytes; 0 means unbounded. */
  maxSize: number;
  /** Files kept, the live one included (>= 1). */
  maxFiles: number;
  compress: boolean;
}

/** Bounded by default, like docker's `local` driver: 20 MB a file, 5 files, compressed. */
export const DEFAULT_LOG_LIMITS = { maxSize: 20 * 1024 * 1024, maxFiles: 5, compress: true };

const MAX_LINE = 16 * 1024;

/** RFC 3339 with nanoseconds, as docker writes them (ours are ms precision, padded). */
function dockerTime(d: Date): string {
  return d.toISOString().replace(/\.(\d{3})Z$/, '.$1000000Z');
}

export class JsonLogWriter extends EventEmitter<{ entry: [LogEntry] }> {
  #fd: number;
  #size: number;
  #partial: Record<StreamName, string> = { stdout: '', stderr: '' };

  constructor(readonly opts: JsonLogOptions) {
    super();
    this.#fd = openSync(opts.path, 'a', 0o640);
    this.#size = fstatSync(this.#fd).size;
  }

  /** Takes a chunk of a stream's output; complete lines are written at once. */
  write(stream: StreamName, chunk: Buffer | string): void {
    let text = this.#partial[stream] + chunk.toString();
    let nl = text.indexOf('\n');
    while (nl >= 0) {
      this.#entry(stream, text.slice(0, nl + 1));
      text = text.slice(nl + 1);
      nl = text.indexOf('\n');
    }
    while (text.length >= MAX_LINE) {
      this.#entry(stream, text.slice(0, MAX_LINE));
      text = text.slice(MAX_LINE);
    }
    this.#partial[stream] = text;
  }

  /** Writes what is left of unterminated lines (the stream ended). */
  flush(stream?: StreamName): void {
    for (const s of stream ? [stream] : (['stdout', 'stderr'] as const)) {
      if (this.#partial[s]) this.#entry(s, this.#partial[s]);
      this.#partial[s] = '';
    }
  }

  close(): void {
    this.flush();
    closeSync(this.#fd);
  }

  #entry(stream: StreamName, log: string) {
    const entry: LogEntry = { stream, log, time: new Date() };
    const line = Buffer.from(`${JSON.stringify({ log, stream, time: dockerTime(entry.time) })}\n`);
    if (this.opts.maxSize > 0 && this.#size > 0 && this.#size + line.length > this.opts.maxSize) this.#rotate();
    writeSync(this.#fd, line);
    this.#size += line.length;
    this.emit('entry', entry);
  }

  #rotate() {
    closeSync(this.#fd);
    const { path, maxFiles, compress } = this.opts;
    if (maxFiles > 1) {
      const name = (i: number) => (i === 0 ? path : `${path}.${i}${compress ? '.gz' : ''}`);
      rmSync(name(maxFiles - 1), { force: true });
      for (let i = maxFiles - 2; i >= 1; i--) if (existsSync(name(i))) renameSync(name(i), name(i + 1));
      if (compress) {
        // Written whole before the live file goes, so a crash leaves one or the other.
        const tmp = `${path}.1.gz.tmp`;
        const out = openSync(tmp, 'w', 0o640);
        writeSync(out, zlib().gzipSync(readFileSync(path)));
        closeSync(out);
        renameSync(tmp, name(1));
        rmSync(path);
      } else {
        renameSync(path, name(1));
      }
    }
    // maxFiles 1: the live file starts over.
    this.#fd = openSync(path, maxFiles > 1 ? 'a' : 'w', 0o640);
    this.#size = 0;
  }
}

/** Parses one json-file line; undefined for a torn or foreign line. */
export function parseLogLine(line: string): LogEntry | undefined {
  try {
    const r = JSON.parse(line) as { log?: unknown; stream?: unknown; time?: unknown };
    if (typeof r.log !== 'string' || (r.stream !== 'stdout' && r.stream !== 'stderr')) return undefined;
    return { log: r.log, stream: r.stream, time: new Date(String(r.time)) };
  } catch {
    return undefined;
  }
}

/** Every entry on disk, oldest first: rotated files (highest number first), then the live one. */
export function readLogEntries(opts: Pick<JsonLogOptions, 'path' | 'maxFiles'>): LogEntry[] {
  const texts: string[] = [];
  for (let i = Math.max(opts.maxFiles, 1) + 1; i >= 1; i--) {
    for (const [file, gz] of [
      [`${opts.path}.${i}.gz`, true],
      [`${opts.path}.${i}`, false],
    ] as const) {
      if (!existsSync(file)) continue;
      const raw = readFileSync(file);
      texts.push((gz ? zlib().gunzipSync(raw) : raw).toString());
    }
  }
  if (existsSync(opts.path)) texts.push(readFileSync(opts.path, 'utf8'));
  const entries: LogEntry[] = [];
  for (const text of texts) {
    for (const line of text.split('\n')) {
      const e = line && parseLogLine(line);
      if (e) entries.push(e);
    }
  }
  return entries;
}
