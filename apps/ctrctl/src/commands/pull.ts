import { ImagesService } from '@ctr/api/images/v1/images';
import { isUnavailable } from '@ctr/common/errors';
import { formatReference, parseReference } from '@ctr/common/reference';
import { type Command, type CommandContext, quietFlag } from '../command.js';
import { UsageError } from '../errors.js';
import { followTransfer, repoAndTag } from '../image-common.js';
import { ProgressView } from '../progress.js';

export function parsePlatform(value: string | undefined) {
  if (!value) return undefined;
  const [os, architecture, variant = ''] = value.split('/');
  if (!os || !architecture) throw new UsageError(`invalid platform "${value}": want os/arch[/variant]`, 'pull');
  return { os, architecture, variant, osVersion: '' };
}

/** run's and create's pull of an image they miss, as docker prints it (on stderr). */
export async function pullForRun(ctx: CommandContext, image: string): Promise<void> {
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

export const command: Command = {
  name: 'pull',
  usage: 'ctrctl pull [OPTIONS] NAME[:TAG|@DIGEST]',
  summary: 'Download an image from a registry',
  flags: [
    quietFlag,
    { name: 'platform', type: 'string', value: 'string', help: 'Set platform if server is multi-platform capable' },
    { name: 'max-concurrent-downloads', type: 'int', value: 'int', help: 'Layers downloaded at once', default: 3 },
  ],
  minArgs: 1,
  maxArgs: 1,
  examples: ['ctrctl pull busybox', 'ctrctl pull 127.0.0.1:5000/app:1'],
  async run({ flags, args, globals, out, err }) {
    const ref = parseReference(args[0]);
    const name = formatReference(ref);
    const api = globals.client(ImagesService, 'image-service');
    const tty = Boolean(err.isTTY) && !flags.quiet;
    const view = flags.quiet ? undefined : new ProgressView(tty ? err : out, tty, 'pull');
    view?.note(`${ref.digest ?? ref.tag}: Pulling from ${ref.path}`);
    const request = {
      ref: args[0],
      unpack: true,
      maxConcurrentDownloads: Number(flags['max-concurrent-downloads']) || 3,
      platform: parsePlatform(flags.platform as string | undefined),
    };
    // image-service restarting under a pull (a crash, a redeploy): the pull is
    // asked again once it is back, and resumes from what its ingests kept.
    const deadline = Date.now() + 30_000;
    let result: Awaited<ReturnType<typeof followTransfer>>;
    for (;;) {
      try {
        result = await followTransfer(api.pull(request), view);
        break;
      } catch (e) {
        if (!isUnavailable(e) || Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    const { image, moved, digest } = result;
    if (!image) throw new Error('the pull ended without an image');
    if (view) {
      const shown = repoAndTag(name).familiar;
      const lines = [
        `Digest: ${digest}`,
        `Status: ${moved ? 'Downloaded newer image' : 'Image is up to date'} for ${shown}`,
      ];
      (tty ? err : out).write(`${lines.join('\n')}\n`);
    }
    out.write(`${name}\n`);
  },
};
