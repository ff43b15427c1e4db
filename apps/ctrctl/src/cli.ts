/**
 * ctrctl's command line: the global flags, the command's lookup, help, and
 * the exit code (main.ts runs it).
 */
import { API_VERSION, VERSION } from '@ctr/common/version';
import { type FlagSpec, flagHelp, parseArgs } from './args.js';
import type { Command } from './command.js';
import { COMMANDS, DIALS, GROUPS } from './commands.js';
import { dialAhead, explainUnavailable, GLOBAL_FLAGS, resolveGlobals } from './engine.js';
import { describeFailure, ExitCode, UsageError } from './errors.js';

const VERSION_FLAG: FlagSpec = {
  name: 'version',
  short: 'v',
  type: 'bool',
  help: 'Print version information and quit',
};

let stdoutUsed = false;
/** process.stdout, noted as used: runCli waits for it to drain before it exits. */
function stdout(): NodeJS.WriteStream {
  stdoutUsed = true;
  return process.stdout;
}

function topHelp(): string {
  const top = Object.entries(COMMANDS).filter(([n]) => !n.includes(' '));
  const width = Math.max(...[...top.map(([n]) => n), ...Object.keys(GROUPS)].map((n) => n.length));
  return [
    'Usage:  ctrctl [OPTIONS] COMMAND',
    '',
    'A container engine with the docker command line',
    '',
    'Commands:',
    ...top.map(([n, c]) => `  ${n.padEnd(width)}   ${c.summary}`),
    '',
    'Management Commands:',
    ...Object.entries(GROUPS).map(([n, s]) => `  ${n.padEnd(width)}   ${s}`),
    '',
    'Global Options:',
    flagHelp([...GLOBAL_FLAGS, VERSION_FLAG]),
    '',
    "Run 'ctrctl COMMAND --help' for more information on a command.",
    '',
  ].join('\n');
}

function groupHelp(group: string): string {
  const subs = Object.entries(COMMANDS).filter(([n]) => n.startsWith(`${group} `));
  const width = Math.max(...subs.map(([n]) => n.length - group.length - 1));
  return [
    `Usage:  ctrctl ${group} COMMAND`,
    '',
    GROUPS[group],
    '',
    'Commands:',
    ...subs.map(([n, c]) => `  ${n.slice(group.length + 1).padEnd(width)}   ${c.summary}`),
    '',
    `Run 'ctrctl ${group} COMMAND --help' for more information on a command.`,
    '',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  // Global flags stand before the command.
  let i = 0;
  const globalArgv: string[] = [];
  const takesValue = new Set(GLOBAL_FLAGS.filter((f) => f.type !== 'bool').map((f) => `--${f.name}`));
  while (i < argv.length && argv[i].startsWith('-')) {
    globalArgv.push(argv[i]);
    if (takesValue.has(argv[i]) && i + 1 < argv.length) globalArgv.push(argv[++i]);
    i++;
  }
  // docker --version (-v): only before a command, where run's -v (a volume) cannot be meant.
  if (globalArgv.includes('--version') || globalArgv.includes('-v')) {
    stdout().write(`ctrctl version ${VERSION}, API ${API_VERSION}\n`);
    return 0;
  }
  const globalFlags = parseArgs(globalArgv, GLOBAL_FLAGS).flags;
  const rest = argv.slice(i);
  if (rest.length === 0 || rest[0] === 'help') {
    stdout().write(topHelp());
    return 0;
  }

  let name = rest[0];
  let cmdArgv = rest.slice(1);
  if (GROUPS[name]) {
    const sub = cmdArgv[0];
    if (!sub || sub.startsWith('-')) {
      stdout().write(groupHelp(name));
      return 0;
    }
    name = `${name} ${sub}`;
    cmdArgv = cmdArgv.slice(1);
  }
  const entry = COMMANDS[name];
  if (!entry) {
    process.stderr.write(`ctrctl: '${name}' is not a ctrctl command.\nSee 'ctrctl --help'\n`);
    return 1;
  }
  // The daemon is dialled while the command loads: the two overlap.
  const dialed = DIALS[name] ? dialAhead(globalFlags, DIALS[name]) : undefined;
  const { command } = await entry.load();
  const specs = [...command.flags, ...GLOBAL_FLAGS];
  let globals: ReturnType<typeof resolveGlobals> | undefined;
  try {
    const { flags, args } = parseArgs(cmdArgv, specs, command.stopAtFirstPositional);
    if (flags.help) {
      stdout().write(commandHelp(command));
      return 0;
    }
    const counts = `"ctrctl ${command.name}"`;
    if (command.maxArgs === 0 && args.length > 0)
      throw new UsageError(`${counts} accepts no arguments.`, command.name, 1);
    if (command.minArgs && args.length < command.minArgs) {
      throw new UsageError(
        `${counts} requires at least ${command.minArgs} argument${command.minArgs > 1 ? 's' : ''}.`,
        command.name,
        1,
      );
    }
    if (command.maxArgs !== undefined && args.length > command.maxArgs) {
      throw new UsageError(
        `${counts} accepts at most ${command.maxArgs} argument${command.maxArgs > 1 ? 's' : ''}.`,
        command.name,
        1,
      );
    }
    for (const g of ['root', 'state', 'instance', 'config']) flags[g] ??= globalFlags[g];
    globals = resolveGlobals(flags);
    const code = await command.run({
      flags,
      args,
      globals,
      // Made when first used: a stream costs 1-2 ms to make, and many commands never write to one.
      get out() {
        return stdout();
      },
      get err() {
        return process.stderr;
      },
    });
    return typeof code === 'number' ? code : 0;
  } catch (err) {
    if (err instanceof ExitCode) return err.code;
    const failure = describeFailure(globals ? explainUnavailable(err, globals.config) : err, command.name);
    process.stderr.write(`${failure.message}\n${failure.hint ? `${failure.hint}\n` : ''}`);
    return failure.code;
  } finally {
    globals?.close();
    dialed?.();
  }
}

function commandHelp(c: Command): string {
  return [
    `Usage:  ${c.usage}`,
    '',
    c.summary,
    '',
    ...(c.flags.length ? ['Options:', flagHelp(c.flags), ''] : []),
    ...(c.examples?.length ? ['Examples:', ...c.examples.map((e) => `  ${e}`), ''] : []),
  ].join('\n');
}

/** Runs ctrctl on `argv` and exits with its code once stdout has drained (a pipe may be slow). */
export async function runCli(argv: string[]): Promise<void> {
  const code = await main(argv).catch((err) => {
    process.stderr.write(`ctrctl: ${err instanceof Error ? err.message : String(err)}\n`);
    return err instanceof UsageError ? 125 : 1;
  });
  // What was written to stdout is out before the exit (a pipe may be slow); nothing to wait for when nothing was.
  if (stdoutUsed) process.stdout.write('', () => process.exit(code));
  else process.exit(code);
}
