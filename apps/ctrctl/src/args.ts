/**
 * Docker-style argument parsing: `--flag value`, `--flag=value`, `-f value`,
 * `-fvalue`, bundled booleans (`-dit`), repeated list flags, `--` to end
 * flags. Commands that take a command line of their own (`run IMAGE CMD...`)
 * stop reading flags at their first positional argument.
 */
import { UsageError } from './errors.js';

export type FlagType = 'bool' | 'string' | 'list' | 'int';

export interface FlagSpec {
  name: string;
  short?: string;
  type: FlagType;
  help: string;
  /** Shown as the value's name in help: --format string */
  value?: string;
  default?: string | boolean | number;
  hidden?: boolean;
}

export type FlagValues = Record<string, string | boolean | number | string[] | undefined>;

export interface Parsed {
  flags: FlagValues;
  args: string[];
}

export function parseArgs(argv: string[], specs: FlagSpec[], stopAtFirstPositional = false): Parsed {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const byShort = new Map(specs.filter((s) => s.short).map((s) => [s.short as string, s]));
  const flags: FlagValues = {};
  for (const s of specs) {
    if (s.type === 'list') flags[s.name] = [];
    else if (s.default !== undefined) flags[s.name] = s.default;
    else if (s.type === 'bool') flags[s.name] = false;
  }
  const args: string[] = [];

  const set = (spec: FlagSpec, raw: string | undefined, shown: string, next: () => string | undefined) => {
    if (spec.type === 'bool') {
      if (raw === undefined || raw === 'true') flags[spec.name] = true;
      else if (raw === 'false') flags[spec.name] = false;
      else throw new UsageError(`invalid argument "${raw}" for "${shown}" flag: parse error`);
      return;
    }
    const value = raw ?? next();
    if (value === undefined) throw new UsageError(`flag needs an argument: ${shown}`);
    if (spec.type === 'int') {
      if (!/^-?\d+$/.test(value))
        throw new UsageError(`invalid argument "${value}" for "${shown}" flag: not an integer`);
      flags[spec.name] = Number(value);
    } else if (spec.type === 'list') {
      (flags[spec.name] as string[]).push(value);
    } else {
      flags[spec.name] = value;
    }
  };

  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => (i + 1 < argv.length ? argv[++i] : undefined);
    if (a === '--') {
      args.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--') && a.length > 2) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      const spec = byName.get(name);
      if (!spec) throw new UsageError(`unknown flag: --${name}`);
      set(spec, eq < 0 ? undefined : a.slice(eq + 1), `--${name}`, next);
      continue;
    }
    if (a.startsWith('-') && a.length > 1 && a !== '-') {
      // Bundled short flags: every one but the last must be boolean; a value may follow inline.
      for (let j = 1; j < a.length; j++) {
        const ch = a[j];
        const spec = byShort.get(ch);
        if (!spec) throw new UsageError(`unknown shorthand flag: '${ch}' in ${a}`);
        if (spec.type === 'bool') {
          set(spec, undefined, `-${ch}`, next);
          continue;
        }
        const rest = a.slice(j + 1);
        set(spec, rest ? rest.replace(/^=/, '') : undefined, `-${ch}, --${spec.name}`, next);
        break;
      }
      continue;
    }
    args.push(a);
    if (stopAtFirstPositional) {
      args.push(...argv.slice(i + 1));
      break;
    }
  }
  return { flags, args };
}

/** The flags part of a command's help text. */
export function flagHelp(specs: FlagSpec[]): string {
  const rows = specs
    .filter((s) => !s.hidden)
    .map((s) => {
      const value =
        s.type === 'bool' ? '' : ` ${s.value ?? (s.type === 'int' ? 'int' : s.type === 'list' ? 'list' : 'string')}`;
      const left = `${s.short ? `-${s.short}, ` : '    '}--${s.name}${value}`;
      const def = s.default !== undefined && s.default !== false ? ` (default ${JSON.stringify(s.default)})` : '';
      return [left, `${s.help}${def}`];
    });
  const width = Math.max(0, ...rows.map((r) => r[0].length));
  return rows.map(([l, r]) => `  ${l.padEnd(width)}   ${r}`).join('\n');
}
