import { ContainersService, TasksService } from '@ctr/api/containers/v1/containers';
import { ImagesService } from '@ctr/api/images/v1/images';
import { isNotFound } from '@ctr/common/errors';
import { formatReference, parseReference } from '@ctr/common/reference';
import type { Command, CommandContext } from '../command.js';
import { attachStdio, startFailureCode } from '../container-common.js';
import { ExitCode, UsageError } from '../errors.js';
import { followTransfer } from '../image-common.js';
import { ProgressView } from '../progress.js';
import { buildConfig, RUN_FLAGS } from '../run-flags.js';
import { parsePlatform } from './pull.js';

async function pull(ctx: CommandContext, image: string): Promise<void> {
  const { flags, globals, err } = ctx;
  const ref = parseReference(image);
  const tty = Boolean(err.isTTY);
  const view = flags.quiet ? undefined : new ProgressView(err, tty, 'pull');
  view?.note(`${ref.digest ?? ref.tag}: Pulling from ${ref.path}`);
  const { digest } = await followTransfer(
    globals.client(ImagesService, 'image-service').pull({
      ref: image,
      unpack: true,
      maxConcurrentDownloads: 3,
      platform: parsePlatform(flags.platform as string | undefined),
    }),
    view,
  );
  if (view) err.write(`Digest: ${digest}\nStatus: Downloaded newer image for ${formatReference(ref)}\n`);
}

/** create (and run's first half): the container, pulling its image first when it is missing. */
export async function createContainer(ctx: CommandContext): Promise<string> {
  const { flags, args, globals, err } = ctx;
  const { name, config } = buildConfig(flags, args);
  const policy = (flags.pull as string | undefined) || 'missing';
  if (!['always', 'missing', 'never'].includes(policy))
    throw new UsageError(`invalid pull option: '${policy}': must be one of "always", "missing" or "never"`);
  try {
    parseReference(config.image);
  } catch (e) {
    throw new UsageError(`invalid reference format: ${(e as Error).message}`);
  }
  const containers = globals.client(ContainersService, 'container-service');
  if (policy === 'always') await pull(ctx, config.image);
  try {
    return (await containers.create({ name, config })).id;
  } catch (e) {
    if (!isNotFound(e) || !/No such image/.test((e as Error).message) || policy === 'never') throw e;
  }
  err.write(`Unable to find image '${config.image}' locally\n`);
  await pull(ctx, config.image);
  return (await containers.create({ name, config })).id;
}

/** A run whose start failed leaves nothing: the container it made goes (its code says why, 125/126/127). */
async function failedStart(ctx: CommandContext, id: string, e: unknown): Promise<never> {
  const message = (e as Error).message;
  await ctx.globals
    .client(ContainersService, 'container-service')
    .delete({ ref: id, force: true, removeVolumes: true })
    .catch(() => undefined);
  ctx.err.write(`Error: ${message}\n`);
  throw new ExitCode(startFailureCode(message));
}

export const command: Command = {
  name: 'run',
  usage: 'ctrctl run [OPTIONS] IMAGE [COMMAND] [ARG...]',
  summary: 'Create and run a new container from an image',
  flags: RUN_FLAGS,
  minArgs: 1,
  stopAtFirstPositional: true,
  examples: [
    'ctrctl run --rm busybox echo hi',
    'ctrctl run -d -p 127.0.0.1:8080:80 --name web busybox httpd -f -p 80',
    'ctrctl run -it busybox sh',
  ],
  async run(ctx) {
    const { flags, globals, out, err } = ctx;
    const id = await createContainer(ctx);
    const tasks = globals.client(TasksService, 'container-service');
    if (flags.detach) {
      try {
        await tasks.start({ ref: id });
      } catch (e) {
        await failedStart(ctx, id, e);
      }
      out.write(`${id}\n`);
      return;
    }
    let result: { exitCode?: number; error?: string } = {};
    try {
      result = await attachStdio(
        tasks,
        {
          ref: id,
          start: true,
          stdin: Boolean(flags.interactive),
          tty: Boolean(flags.tty),
          detachKeys: flags['detach-keys'] as string | undefined,
        },
        { stdin: process.stdin, out, err },
      );
    } catch (e) {
      await failedStart(ctx, id, e);
    }
    if (result.exitCode === undefined) return 0;
    return result.exitCode;
  },
};
