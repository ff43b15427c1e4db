import { describe, expect, it } from 'vitest';
import { bytesSize, humanDuration, humanSize, printList, renderTemplate, table, toJson } from './format.js';

describe('output formatting', () => {
  it('aligns table columns three spaces apart', () => {
    expect(
      table(
        ['NAME', 'PID'],
        [
          ['a', '1'],
          ['longer-name', '22'],
        ],
      ),
    ).toBe('NAME          PID\na             1\nlonger-name   22');
  });

  it('writes durations and sizes as docker does', () => {
    expect(humanDuration(500)).toBe('Less than a second');
    expect(humanDuration(1000)).toBe('1 second');
    expect(humanDuration(45_000)).toBe('45 seconds');
    expect(humanDuration(90_000)).toBe('About a minute');
    expect(humanDuration(5 * 60_000)).toBe('5 minutes');
    expect(humanDuration(3 * 3_600_000)).toBe('3 hours');
    expect(humanDuration(3 * 86_400_000)).toBe('3 days');
    expect(bytesSize(0)).toBe('0B');
    expect(bytesSize(1536)).toBe('1.5KiB');
    expect(bytesSize(25_274_556_416)).toBe('23.54GiB');
    // docker images: decimal units, three significant digits.
    expect(humanSize(999)).toBe('999B');
    expect(humanSize(1000)).toBe('1kB');
    expect(humanSize(4_261_000)).toBe('4.26MB');
    expect(humanSize(77_940_000)).toBe('77.9MB');
  });

  it('renders Go-style templates', () => {
    const data = { Name: 'web', State: { Status: 'running' }, Labels: { a: 'b' }, N: 3n };
    expect(renderTemplate('{{.Name}} {{.State.Status}}', data)).toBe('web running');
    expect(renderTemplate('{{json .State}}', data)).toBe('{"Status":"running"}');
    expect(renderTemplate('{{index .Labels "a"}}', data)).toBe('b');
    expect(renderTemplate('{{upper .Name}}\\t{{.Missing}}', data)).toBe('WEB\t<no value>');
    expect(toJson({ n: 1795420409766000001n })).toBe('{"n":1795420409766000001}');
  });

  it('prints listings as a table, JSON lines, or a template', () => {
    const items = [
      { name: 'a', pid: 1 },
      { name: 'b', pid: 2 },
    ];
    const capture = (format?: string) => {
      let s = '';
      printList(
        {
          write: (c: string) => {
            s += c;
            return true;
          },
        } as unknown as NodeJS.WritableStream,
        format,
        items,
        () => 'TABLE',
      );
      return s;
    };
    expect(capture()).toBe('TABLE\n');
    expect(capture('json')).toBe('{"name":"a","pid":1}\n{"name":"b","pid":2}\n');
    expect(capture('{{.name}}')).toBe('a\nb\n');
    expect(capture('table {{.name}}\\t{{.pid}}')).toBe('NAME   PID\na      1\nb      2\n');
  });
});
