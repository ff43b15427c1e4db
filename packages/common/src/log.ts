/**
 * Logging: pino JSON lines. A daemon writes to stdout, which ctrd points at the
 * service's log file; on a TTY the same records are printed as readable lines.
 */
import { Writable } from 'node:stream';
import pino, { type Logger } from 'pino';

export type { Logger } from 'pino';

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const OMIT = new Set(['level', 'time', 'pid', 'hostname', 'name', 'msg']);

/** Formats one pino JSON record as `15:04:05.000 INFO  name: message key=value`. */
export function formatRecord(line: string): string {
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(line);
  } catch {
    return line;
  }
  const time = new Date(Number(rec.time)).toISOString().slice(11, 23);
  const level = (LEVELS[Number(rec.level)] ?? String(rec.level)).padEnd(5);
  const extra = Object.entries(rec)
    .filter(([k]) => !OMIT.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${time} ${level} ${rec.name ?? ''}: ${rec.msg ?? ''}${extra ? ` ${extra}` : ''}`;
}

function prettyStream(out: NodeJS.WriteStream): Writable {
  let pending = '';
  return new Writable({
    write(chunk, _enc, done) {
      pending += chunk.toString();
      let nl = pending.indexOf('\n');
      while (nl >= 0) {
        out.write(`${formatRecord(pending.slice(0, nl))}\n`);
        pending = pending.slice(nl + 1);
        nl = pending.indexOf('\n');
      }
      done();
    },
  });
}

export interface LoggerOptions {
  name: string;
  level?: string;
  /** Force JSON even on a TTY. */
  json?: boolean;
}

export function createLogger(opts: LoggerOptions): Logger {
  const base = { name: opts.name, level: opts.level ?? 'info', base: { pid: process.pid } };
  if (process.stdout.isTTY && !opts.json) return pino(base, prettyStream(process.stdout));
  // Synchronous writes: a daemon's log must survive a crash right after the line.
  return pino(base, pino.destination({ dest: 1, sync: true }));
}
