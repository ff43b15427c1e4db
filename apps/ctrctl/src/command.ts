/** The shape of a ctrctl command: its flags, its help, and what it does. */
import type { FlagSpec, FlagValues } from './args.js';
import type { Globals } from './engine.js';

export interface Command {
  /** Full name, as typed: "ps", "system services". */
  name: string;
  usage: string;
  summary: string;
  flags: FlagSpec[];
  examples?: string[];
  /** Positional argument count. */
  minArgs?: number;
  maxArgs?: number;
  /** `run IMAGE CMD...`: flags after the first positional belong to CMD. */
  stopAtFirstPositional?: boolean;
  /** Resolves to the exit code, or anything else for 0. */
  run(ctx: CommandContext): Promise<unknown>;
}

export interface CommandContext {
  flags: FlagValues;
  args: string[];
  globals: Globals;
  out: NodeJS.WriteStream;
  err: NodeJS.WriteStream;
}

export const formatFlag: FlagSpec = {
  name: 'format',
  type: 'string',
  value: 'string',
  help: "Format output: 'json', or a Go-style template such as '{{.Name}}'",
};
export const quietFlag: FlagSpec = { name: 'quiet', short: 'q', type: 'bool', help: 'Only display IDs' };
