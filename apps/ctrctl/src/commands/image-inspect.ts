import { ImagesService } from '@ctr/api/images/v1/images';
import { type Command, formatFlag } from '../command.js';
import { ExitCode } from '../errors.js';
import { printOne, toJson } from '../format.js';
import { repoAndTag } from '../image-common.js';

export const command: Command = {
  name: 'image inspect',
  usage: 'ctrctl image inspect [OPTIONS] IMAGE [IMAGE...]',
  summary: 'Display detailed information on one or more images',
  flags: [{ ...formatFlag, short: 'f' }],
  minArgs: 1,
  examples: ['ctrctl image inspect busybox', "ctrctl image inspect --format '{{.Id}}' busybox"],
  async run({ flags, args, globals, out, err }) {
    const api = globals.client(ImagesService, 'image-service');
    const all = (await api.list({ filters: [] })).images;
    const results: unknown[] = [];
    let failed = false;
    for (const ref of args) {
      try {
        const image = await api.get({ ref });
        const { configJson } = await api.config({ ref: image.name });
        const config = JSON.parse(configJson.toString('utf8'));
        const names = all.filter((i) => i.id === image.id);
        const repoTags = names.filter((i) => !i.name.startsWith('<none>')).map((i) => repoAndTag(i.name).familiar);
        const repoDigests = names
          .filter((i) => !i.name.startsWith('<none>'))
          .map((i) => `${repoAndTag(i.name).repository}@${i.target?.digest}`);
        results.push({
          Id: image.id,
          RepoTags: repoTags,
          RepoDigests: [...new Set(repoDigests)],
          Parent: '',
          Comment: (config.history ?? []).at(-1)?.comment ?? '',
          Created: config.created ?? '',
          DockerVersion: config.docker_version ?? '',
          Author: config.author ?? '',
          Config: config.config ?? {},
          Architecture: config.architecture,
          Variant: config.variant,
          Os: config.os,
          Size: Number(image.size),
          GraphDriver: { Name: 'overlay2', Data: null },
          RootFS: { Type: 'layers', Layers: config.rootfs?.diff_ids ?? [] },
          Metadata: { LastTagTime: image.updatedAt?.toISOString() ?? '' },
          Descriptor: image.target && {
            mediaType: image.target.mediaType,
            digest: image.target.digest,
            size: Number(image.target.size),
          },
        });
      } catch (e) {
        failed = true;
        err.write(`Error: ${(e as Error).message}\n`);
      }
    }
    const format = flags.format as string | undefined;
    if (format) for (const r of results) printOne(out, format, r);
    else out.write(`${JSON.stringify(JSON.parse(toJson(results)), null, 4)}\n`);
    if (failed) throw new ExitCode(1);
  },
};
