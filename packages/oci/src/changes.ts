/**
 * docker commit's `--change`: Dockerfile instructions that edit the new
 * image's config (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, ONBUILD, STOPSIGNAL,
 * USER, VOLUME, WORKDIR), with the Dockerfile's JSON and shell forms and its
 * quoting for key=value pairs.
 */
import { posix } from 'node:path';
import { invalidArgument } from '@ctr/common/errors';
import type { ImageConfig } from './generate.js';

/** The "config" section of an image config, as docker writes it. */
export interface CommitConfig extends ImageConfig {
  ExposedPorts?: Record<string, Record<string, never>>;
  Volumes?: Record<string, Record<string, never>>;
  OnBuild?: string[];
  [other: string]: unknown;
}

const ALLOWED = new Set([
  'CMD',
  'ENTRYPOINT',
  'ENV',
  'EXPOSE',
  'LABEL',
  'ONBUILD',
  'STOPSIGNAL',
  'USER',
  'VOLUME',
  'WORKDIR',
]);

/** Words split on blanks outside quotes; quotes removed, backslash escapes kept as their character. */
export function splitWords(s: string): string[] {
  const out: string[] = [];
  let cur = '';
  let any = false;
  let quote = '';
  for (let i = 0; i < s.length; i++) {
    const ch = s[i];
    if (quote) {
      if (ch === quote) quote = '';
      else if (ch === '\\' && quote === '"' && i + 1 < s.length) cur += s[++i];
      else cur += ch;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
      any = true;
    } else if (ch === '\\' && i + 1 < s.length) {
      cur += s[++i];
      any = true;
    } else if (/\s/.test(ch)) {
      if (any || cur) out.push(cur);
      cur = '';
      any = false;
    } else {
      cur += ch;
      any = true;
    }
  }
  if (quote) throw invalidArgument(`unterminated quote in ${JSON.stringify(s)}`);
  if (any || cur) out.push(cur);
  return out;
}

/** The JSON array form (`["a", "b"]`), or undefined when `rest` is not one. */
function jsonForm(rest: string): string[] | undefined {
  if (!rest.startsWith('[')) return undefined;
  try {
    const v = JSON.parse(rest) as unknown;
    if (Array.isArray(v) && v.every((x) => typeof x === 'string')) return v;
  } catch {
    // the shell form, which may start with "["
  }
  return undefined;
}

/** `K=V K2="v 2"`, or the legacy `K V W` (one pair, the value is the rest). */
function pairs(instr: string, rest: string): Array<[string, string]> {
  const words = splitWords(rest);
  if (!words.length) throw invalidArgument(`${instr} requires at least one argument`);
  if (!words[0].includes('=')) {
    const m = /^(\S+)\s+(.*)$/s.exec(rest.trim());
    if (!m) throw invalidArgument(`${instr} must have two arguments`);
    return [[m[1], m[2].trim()]];
  }
  return words.map((w) => {
    const eq = w.indexOf('=');
    if (eq <= 0) throw invalidArgument(`${instr} names can not be blank: ${JSON.stringify(w)}`);
    return [w.slice(0, eq), w.slice(eq + 1)];
  });
}

function port(spec: string): string {
  const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i.exec(spec);
  if (!m) throw invalidArgument(`invalid containerPort: ${spec}`);
  return `${m[1]}${m[2] ? `-${m[2]}` : ''}/${(m[3] ?? 'tcp').toLowerCase()}`;
}

/** `config` with each change applied in order; an instruction commit cannot take is refused. */
export function applyChanges(config: CommitConfig, changes: string[]): CommitConfig {
  const c: CommitConfig = structuredClone(config);
  for (const raw of changes) {
    for (const line of raw.split('\n')) {
      const text = line.trim();
      if (!text || text.startsWith('#')) continue;
      const m = /^(\S+)\s*(.*)$/s.exec(text);
      const instr = (m?.[1] ?? '').toUpperCase();
      const rest = (m?.[2] ?? '').trim();
      if (!ALLOWED.has(instr)) throw invalidArgument(`${m?.[1] ?? text} is not a valid change command`);
      switch (instr) {
        case 'CMD':
        case 'ENTRYPOINT': {
          const argv = jsonForm(rest) ?? (rest ? ['/bin/sh', '-c', rest] : []);
          if (instr === 'CMD') c.Cmd = argv;
          else {
            c.Entrypoint = argv.length ? argv : null;
            // As in a Dockerfile: a new entrypoint drops the inherited CMD.
            c.Cmd = null;
          }
          break;
        }
        case 'ENV': {
          const env = [...(c.Env ?? [])];
          for (const [k, v] of pairs(instr, rest)) {
            const i = env.findIndex((e) => e.split('=')[0] === k);
            if (i >= 0) env[i] = `${k}=${v}`;
            else env.push(`${k}=${v}`);
          }
          c.Env = env;
          break;
        }
        case 'LABEL':
          c.Labels = { ...(c.Labels ?? {}), ...Object.fromEntries(pairs(instr, rest)) };
          break;
        case 'EXPOSE': {
          const words = splitWords(rest);
          if (!words.length) throw invalidArgument('EXPOSE requires at least one argument');
          c.ExposedPorts = { ...(c.ExposedPorts ?? {}) };
          for (const w of words) c.ExposedPorts[port(w)] = {};
          break;
        }
        case 'VOLUME': {
          const paths = jsonForm(rest) ?? splitWords(rest);
          if (!paths.length || paths.some((p) => !p))
            throw invalidArgument('VOLUME specified can not be an empty string');
          c.Volumes = { ...(c.Volumes ?? {}) };
          for (const p of paths) c.Volumes[p] = {};
          break;
        }
        case 'WORKDIR':
          if (!rest) throw invalidArgument('WORKDIR requires exactly one argument');
          c.WorkingDir = posix.resolve(c.WorkingDir || '/', rest);
          break;
        case 'USER':
          if (!rest) throw invalidArgument('USER requires exactly one argument');
          c.User = rest;
          break;
        case 'STOPSIGNAL':
          if (!rest) throw invalidArgument('STOPSIGNAL requires exactly one argument');
          c.StopSignal = rest;
          break;
        case 'ONBUILD':
          if (!rest) throw invalidArgument('ONBUILD requires at least one argument');
          c.OnBuild = [...(c.OnBuild ?? []), rest];
          break;
      }
    }
  }
  return c;
}
