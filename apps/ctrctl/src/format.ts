/** Output as docker prints it: aligned tables, human durations and sizes, JSON lines, templates. */

/** Columns separated by at least three spaces, as docker's tabwriter does. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] + 3)))
      .join('')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** docker's units.HumanDuration: "Less than a second", "3 minutes", "2 hours"... */
export function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 1) return 'Less than a second';
  if (s === 1) return '1 second';
  if (s < 60) return `${s} seconds`;
  const m = Math.floor(s / 60);
  if (m === 1) return 'About a minute';
  if (m < 60) return `${m} minutes`;
  const h = Math.round(s / 3600);
  if (h === 1) return 'About an hour';
  if (h < 48) return `${h} hours`;
  if (h < 24 * 7 * 2) return `${Math.floor(h / 24)} days`;
  if (h < 24 * 30 * 2) return `${Math.floor(h / 24 / 7)} weeks`;
  if (h < 24 * 365 * 2) return `${Math.floor(h / 24 / 30)} months`;
  return `${Math.floor(h / 24 / 365)} years`;
}

/** docker's units.BytesSize: binary units, 4 significant digits ("%.4g"): "1.5KiB", "23.54GiB". */
export function bytesSize(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${Number(v.toPrecision(4))}${units[i]}`;
}

/** docker's units.HumanSize: decimal units, 3 significant digits ("4.26MB", "77.9kB"). */
export function humanSize(n: number): string {
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let i = 0;
  let v = n;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${Number(v.toPrecision(3))}${units[i]}`;
}

const rawJSON = (JSON as unknown as { rawJSON(text: string): unknown }).rawJSON;

/** JSON with bigints as exact numbers and Dates as RFC 3339 strings. */
export function toJson(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (typeof v === 'bigint' ? rawJSON(v.toString()) : v));
}

function lookup(data: unknown, path: string): unknown {
  if (path === '.' || path === '') return data;
  let cur: unknown = data;
  for (const part of path.replace(/^\./, '').split('.')) {
    if (cur === null || cur === undefined) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

function show(v: unknown): string {
  if (v === undefined || v === null) return '<no value>';
  if (v instanceof Date) return v.toISOString();
  if (typeof v === 'object') {
    if (Array.isArray(v)) return `[${v.map(show).join(' ')}]`;
    return `map[${Object.entries(v as object)
      .map(([k, x]) => `${k}:${show(x)}`)
      .join(' ')}]`;
  }
  return String(v);
}

/**
 * A Go-template-like renderer for --format: {{.Field}}, {{.A.B}}, {{json .}},
 * {{json .Field}}, {{index .Map "key"}}, {{upper .X}}, {{lower .X}}; `\t` and
 * `\n` escapes as docker allows.
 */
export function renderTemplate(template: string, data: unknown): string {
  const text = template.replace(/\\t/g, '\t').replace(/\\n/g, '\n');
  return text.replace(/\{\{\s*(.*?)\s*\}\}/g, (_m, expr: string) => {
    const words = expr.match(/"[^"]*"|\S+/g) ?? [];
    const arg = (w = '.') => (w.startsWith('"') ? w.slice(1, -1) : lookup(data, w));
    switch (words[0]) {
      case 'json':
        return toJson(arg(words[1] ?? '.'));
      case 'index': {
        const base = arg(words[1]) as Record<string, unknown> | undefined;
        return show(base?.[String(arg(words[2]))]);
      }
      case 'upper':
        return show(arg(words[1])).toUpperCase();
      case 'lower':
        return show(arg(words[1])).toLowerCase();
      default:
        return show(arg(words[0]));
    }
  });
}

/**
 * Prints a listing: `json` as one object per line, a template per item, or
 * the default table. `table {{.A}}\t{{.B}}` prints a header from field names.
 */
export function printList<T>(
  out: NodeJS.WritableStream,
  format: string | undefined,
  items: T[],
  fallback: () => string,
): void {
  if (!format) {
    out.write(`${fallback()}\n`);
  } else if (format === 'json') {
    for (const item of items) out.write(`${toJson(item)}\n`);
  } else if (format.startsWith('table ')) {
    const tpl = format.slice(6);
    const header = tpl.replace(/\{\{\s*\.?([\w.]*)\s*\}\}/g, (_m, f: string) => f.toUpperCase());
    const lines = items.map((i) => renderTemplate(tpl, i).split('\t'));
    out.write(`${table(renderTemplate(header, {}).split('\t'), lines)}\n`);
  } else {
    for (const item of items) out.write(`${renderTemplate(format, item)}\n`);
  }
}

/** Prints one object (inspect-like): JSON, or a template. */
export function printOne(out: NodeJS.WritableStream, format: string, item: unknown): void {
  out.write(format === 'json' ? `${toJson(item)}\n` : `${renderTemplate(format, item)}\n`);
}

/**
 * docker's `X inspect REF...`: the objects found as one JSON array (or each
 * through --format), then one error line per missing ref; exit 1 if any was.
 */
export async function printInspect(
  io: { out: NodeJS.WritableStream; err: NodeJS.WritableStream },
  format: string | undefined,
  refs: string[],
  get: (ref: string) => Promise<unknown>,
): Promise<number> {
  const results: unknown[] = [];
  const errors: string[] = [];
  for (const ref of refs) {
    try {
      results.push(await get(ref));
    } catch (e) {
      errors.push(`Error: ${(e as Error).message}`);
    }
  }
  if (format) for (const r of results) printOne(io.out, format, r);
  else io.out.write(`${JSON.stringify(results, null, 4)}\n`);
  for (const line of errors) io.err.write(`${line}\n`);
  return errors.length ? 1 : 0;
}
