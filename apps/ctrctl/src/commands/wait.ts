import { TasksService, WaitCondition } from '@ctr/api/containers/v1/containers';
import type { Command } from '../command.js';
import { eachRef } from '../container-common.js';

export const command: Command = {
  name: 'wait',
  usage: 'ctrctl wait CONTAINER [CONTAINER...]',
  summary: 'Block until one or more containers stop, then print their exit codes',
  flags: [],
  minArgs: 1,
  async run({ args, globals, out, err }) {
    const tasks = globals.client(TasksService, 'container-service');
    return eachRef(args, err, async (ref) => {
      const r = await tasks.wait(
        { ref, execId: '', condition: WaitCondition.WAIT_CONDITION_NOT_RUNNING },
        { timeoutMs: 365 * 86400_000 },
      );
      out.write(`${r.exitCode}\n`);
    });
  },
};
