import { describe, expect, it } from 'vitest';
import { type FlagSpec, flagHelp, parseArgs } from './args.js';
import { UsageError } from './errors.js';

const specs: FlagSpec[] = [
  { name: 'detach', short: 'd', type: 'bool', help: 'Run in background' },
  { name: 'interactive', short: 'i', type: 'bool', help: 'Keep STDIN open' },
  { name: 'tty', short: 't', type: 'bool', help: 'Allocate a TTY' },
  { name: 'env', short: 'e', type: 'list', help: 'Set environment variables' },
  { name: 'name', type: 'string', help: 'Name' },
  { name: 'time', type: 'int', help: 'Seconds', default: 10 },
];

describe('docker-style argument parsing', () => {
  it('reads long, short, bundled and inline forms', () => {
    const { flags, args } = parseArgs(
      ['-dit', '--name=web', '-e', 'A=1', '-eB=2', '--env', 'C=3', '--time', '3', 'img'],
      specs,
    );
    expect(flags).toMatchObject({
      detach: true,
      interactive: true,
      tty: true,
      name: 'web',
      time: 3,
      env: ['A=1', 'B=2', 'C=3'],
    });
    expect(args).toEqual(['img']);
  });

  it('stops at the first positional for commands that carry a command line', () => {
    const { flags, args } = parseArgs(['-d', 'busybox', 'ls', '-la', '--name', 'x'], specs, true);
    expect(flags.detach).toBe(true);
    expect(flags.name).toBeUndefined();
    expect(args).toEqual(['busybox', 'ls', '-la', '--name', 'x']);
  });

  it('keeps defaults and honours -- and --flag=false', () => {
    const { flags, args } = parseArgs(['--detach=false', '--', '-d'], specs);
    expect(flags.detach).toBe(false);
    expect(flags.time).toBe(10);
    expect(args).toEqual(['-d']);
  });

  it('says what is wrong in docker words', () => {
    const fail = (argv: string[]) => {
      try {
        parseArgs(argv, specs);
      } catch (e) {
        expect(e).toBeInstanceOf(UsageError);
        return (e as Error).message;
      }
      throw new Error('no error');
    };
    expect(fail(['--bogus'])).toBe('unknown flag: --bogus');
    expect(fail(['-x'])).toBe("unknown shorthand flag: 'x' in -x");
    expect(fail(['--name'])).toBe('flag needs an argument: --name');
    expect(fail(['--time', 'soon'])).toBe('invalid argument "soon" for "--time" flag: not an integer');
  });

  it('prints help for the flags', () => {
    const help = flagHelp(specs);
    expect(help).toContain('-d, --detach');
    expect(help).toContain('--time int');
    expect(help).toContain('(default 10)');
  });
});
