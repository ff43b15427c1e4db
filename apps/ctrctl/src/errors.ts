/** How ctrctl fails: one line on stderr and docker's exit codes. */
import { CtrError } from '@ctr/common/errors';
import { answeredByDaemon } from '@ctr/common/grpc-client';

/** A bad flag or argument: docker exits 125 for these, whatever the command. */
export class UsageError extends Error {
  constructor(
    message: string,
    readonly command = '',
    /** docker: 125 for flag errors, 1 for a wrong number of arguments. */
    readonly exitCode = 125,
  ) {
    super(message);
  }
}

/** A command that wants a specific exit code without an error line (a container's own code). */
export class ExitCode extends Error {
  constructor(readonly code: number) {
    super(`exit ${code}`);
  }
}

/** Commands that pass a container's exit code on and so report engine failures as 125. */
export const ENGINE_125 = new Set(['run', 'create', 'exec', 'container run', 'container create', 'container exec']);

export interface Failure {
  message: string;
  code: number;
  hint?: string;
}

export function describeFailure(err: unknown, command: string): Failure {
  if (err instanceof UsageError) {
    return { message: err.message, code: err.exitCode, hint: `See 'ctrctl ${err.command || command} --help'.` };
  }
  if (err instanceof CtrError) {
    if (err.kind === 'Unavailable' && !answeredByDaemon(err)) return { message: err.message, code: 125 };
    return { message: `Error: ${err.message}`, code: ENGINE_125.has(command) ? 125 : 1 };
  }
  const message = err instanceof Error ? err.message : String(err);
  return { message: `Error: ${message}`, code: ENGINE_125.has(command) ? 125 : 1 };
}
