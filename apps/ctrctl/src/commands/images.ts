import { type Image, ImagesService } from '@ctr/api/images/v1/images';
import { type Command, formatFlag, quietFlag } from '../command.js';
import { humanDuration, humanSize, printList, table } from '../format.js';
import { repoAndTag, shortId } from '../image-common.js';

/** docker's --filter reference=…, dangling=…, label=… as the service's filters. */
function serviceFilters(filters: string[]): string[] {
  return filters.map((f) => {
    const [key, ...rest] = f.split('=');
    const value = rest.join('=');
    if (key === 'label') {
      const [k, ...v] = value.split('=');
      return `labels."${k}"==${v.join('=')}`;
    }
    return `${key}==${value}`;
  });
}

export function imageRow(i: Image, noTrunc = false) {
  const { repository, tag } = repoAndTag(i.name);
  const created = i.imageCreatedAt ?? i.createdAt;
  return {
    Containers: 'N/A',
    CreatedAt: created?.toISOString() ?? '',
    CreatedSince: created ? `${humanDuration(Date.now() - created.getTime())} ago` : 'N/A',
    Digest: i.target?.digest ?? '<none>',
    ID: noTrunc ? i.id : shortId(i.id),
    Repository: repository,
    SharedSize: 'N/A',
    Size: humanSize(Number(i.size)),
    Tag: tag,
    UniqueSize: 'N/A',
    VirtualSize: humanSize(Number(i.size)),
  };
}

export const command: Command = {
  name: 'images',
  usage: 'ctrctl images [OPTIONS] [REPOSITORY[:TAG]]',
  summary: 'List images',
  flags: [
    quietFlag,
    formatFlag,
    { name: 'all', short: 'a', type: 'bool', help: 'Show all images (every image is shown)' },
    { name: 'digests', type: 'bool', help: 'Show digests' },
    { name: 'no-trunc', type: 'bool', help: "Don't truncate output" },
    { name: 'filter', short: 'f', type: 'list', value: 'filter', help: 'Filter output based on conditions provided' },
  ],
  maxArgs: 1,
  examples: ['ctrctl images', 'ctrctl images --format json', "ctrctl images --filter 'reference=busy*'"],
  async run({ flags, args, globals, out }) {
    const filters = serviceFilters(flags.filter as string[]);
    if (args[0]) filters.push(`reference==${args[0]}`);
    const { images } = await globals.client(ImagesService, 'image-service').list({ filters });
    const rows = images
      .map((i) => imageRow(i, Boolean(flags['no-trunc'])))
      .sort((a, b) => (a.CreatedAt < b.CreatedAt ? 1 : a.CreatedAt > b.CreatedAt ? -1 : 0));
    if (flags.quiet) {
      for (const id of new Set(rows.map((r) => r.ID))) out.write(`${id}\n`);
      return;
    }
    const digests = Boolean(flags.digests);
    printList(out, flags.format as string | undefined, rows, () =>
      table(
        ['REPOSITORY', 'TAG', ...(digests ? ['DIGEST'] : []), 'IMAGE ID', 'CREATED', 'SIZE'],
        rows.map((r) => [r.Repository, r.Tag, ...(digests ? [r.Digest] : []), r.ID, r.CreatedSince, r.Size]),
      ),
    );
  },
};
