import { ContainersService } from '@ctr/api/containers/v1/containers';
import { ImagesService } from '@ctr/api/images/v1/images';
import { isNotFound } from '@ctr/common/errors';
import { type Command, formatFlag } from '../command.js';
import { inspectContainer } from '../container-common.js';
import { ExitCode, UsageError } from '../errors.js';
import { printOne } from '../format.js';

/** docker inspect: containers first; with --type image, or when no container has the names, images. */
export const command: Command = {
  name: 'inspect',
  usage: 'ctrctl inspect [OPTIONS] NAME|ID [NAME|ID...]',
  summary: 'Return low-level information on containers or images',
  flags: [
    { ...formatFlag, short: 'f' },
    { name: 'type', type: 'string', value: 'string', help: 'Return JSON for specified type (container, image)' },
    { name: 'size', short: 's', type: 'bool', help: 'Display total file sizes if the type is container' },
  ],
  minArgs: 1,
  examples: ['ctrctl inspect web', "ctrctl inspect -f '{{.State.ExitCode}}' job"],
  async run(ctx) {
    const { flags, args, globals, out, err } = ctx;
    const type = (flags.type as string | undefined) ?? '';
    if (type && !['container', 'image'].includes(type))
      throw new UsageError(`"${type}" is not a valid value for --type`);
    if (type === 'image') return (await import('./image-inspect.js')).command.run(ctx);
    const api = globals.client(ContainersService, 'container-service');
    const results: unknown[] = [];
    const missing: string[] = [];
    for (const ref of args) {
      try {
        results.push(inspectContainer(await api.get({ ref, size: Boolean(flags.size) })));
      } catch (e) {
        if (!isNotFound(e)) throw e;
        missing.push(ref);
      }
    }
    if (!type && results.length === 0) {
      // No container by these names: images, as docker's inspect looks for any object.
      const images = globals.client(ImagesService, 'image-service');
      const found = await Promise.all(
        missing.map((ref) =>
          images.get({ ref }).then(
            () => true,
            () => false,
          ),
        ),
      );
      if (found.every(Boolean)) return (await import('./image-inspect.js')).command.run(ctx);
    }
    const format = flags.format as string | undefined;
    if (format) for (const r of results) printOne(out, format, r);
    else out.write(`${JSON.stringify(results, null, 4)}\n`);
    for (const ref of missing) err.write(`Error: No such object: ${ref}\n`);
    if (missing.length) throw new ExitCode(1);
  },
};
