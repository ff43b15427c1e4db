import { ContainersService, type CreateContainerRequest, TasksService } from '@ctr/api/containers/v1/containers';
import { CtrError, isNotFound } from '@ctr/common/errors';
import { answeredByDaemon } from '@ctr/common/grpc-client';
import { parseReference } from '@ctr/common/reference';
import type { Command, CommandContext } from '../command.js';
import { attachStdio, startFailureCode } from '../container-common.js';
import { ExitCode, UsageError } from '../errors.js';
import { buildConfig, RUN_FLAGS } from '../run-flags.js';

/** The image pulled (docker's lines on stderr): its code is loaded only when a run needs it. */
async function pull(ctx: CommandContext, image: string): Promise<void> {
  await (await import('./pull.js')).pullForRun(ctx, image);
}

/**
 * The container made by `make` (create, or create and start in one call),
 * pulling its image first when it is missing (docker's --pull policy): a
 * call that found no image is made again after the pull.
 */
async function withImage<T>(ctx: CommandContext, make: (req: CreateContainerRequest) => Promise<T>): Promise<T> {
  const { flags, args } = ctx;
  const { name, config } = buildConfig(flags, args);
  const policy = (flags.pull as string | undefined) || 'missing';
  if (!['always', 'missing', 'never'].includes(policy))
    throw new UsageError(`invalid pull option: '${policy}': must be one of "always", "missing" or "never"`);
  try {
    parseReference(config.image);
  } catch (e) {
    throw new UsageError(`invalid reference format: ${(e as Error).message}`);
  }
  const req = { name, config, start: false };
  if (policy === 'always') await pull(ctx, config.image);
  try {
    return await make(req);
  } catch (e) {
    if (!isNotFound(e) || !/No such image/.test((e as Error).message) || policy !== 'missing') throw e;
  }
  ctx.err.write(`Unable to find image '${config.image}' locally\n`);
  await pull(ctx, config.image);
  return make(req);
}

/** create: the container, its image pulled first when missing. */
export async function createContainer(ctx: CommandContext): Promise<string> {
  const containers = ctx.globals.client(ContainersService, 'container-service');
  return withImage(ctx, async (req) => (await containers.create(req)).id);
}

/**
 * A run that failed has left nothing (a container whose start failed is
 * gone): the error and docker's code, 125, or 126/127 for a command that
 * cannot run. A usage error, or no daemon to ask, is told as any command's.
 */
function failedStart(ctx: CommandContext, e: unknown): never {
  if (e instanceof UsageError || (e instanceof CtrError && e.kind === 'Unavailable' && !answeredByDaemon(e))) throw e;
  const message = (e as Error).message;
  ctx.err.write(`Error: ${message}\n`);
  throw new ExitCode(startFailureCode(message));
}

/** A run whose start failed leaves nothing: the container it made goes (its code says why, 125/126/127). */
async function removeFailed(ctx: CommandContext, id: string, e: unknown): Promise<never> {
  await ctx.globals
    .client(ContainersService, 'container-service')
    .delete({ ref: id, force: true, removeVolumes: true })
    .catch(() => undefined);
  return failedStart(ctx, e);
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
    const { flags, globals } = ctx;
    const containers = globals.client(ContainersService, 'container-service');
    const tasks = globals.client(TasksService, 'container-service');
    const attach = (id: string, create?: CreateContainerRequest) =>
      attachStdio(
        tasks,
        {
          ref: id,
          create,
          start: true,
          stdin: Boolean(flags.interactive),
          tty: Boolean(flags.tty),
          detachKeys: flags['detach-keys'] as string | undefined,
        },
        ctx,
      );
    // Made and started in one call, which removes the container again when its start fails. An
    // interactive run makes it first: a call made again after a pull would have lost what stdin gave.
    let result: { exitCode?: number; error?: string } = {};
    if (flags.detach) {
      let id: string;
      try {
        id = await withImage(ctx, async (req) => (await containers.create({ ...req, start: true })).id);
      } catch (e) {
        failedStart(ctx, e);
      }
      ctx.out.write(`${id}\n`);
      return;
    }
    if (flags.interactive) {
      const id = await createContainer(ctx);
      try {
        result = await attach(id);
      } catch (e) {
        await removeFailed(ctx, id, e);
      }
    } else {
      try {
        result = await withImage(ctx, (req) => attach('', req));
      } catch (e) {
        failedStart(ctx, e);
      }
    }
    if (result.exitCode === undefined) return 0;
    return result.exitCode;
  },
};
