import { ImagesService } from '@ctr/api/images/v1/images';
import { type Command, formatFlag } from '../command.js';
import { humanSize, printList, table } from '../format.js';

export const command: Command = {
  name: 'system df',
  usage: 'ctrctl system df [OPTIONS]',
  summary: 'Show engine disk usage',
  flags: [formatFlag],
  maxArgs: 0,
  examples: ['ctrctl system df', 'ctrctl system df --format json'],
  async run({ flags, globals, out }) {
    const u = await globals.client(ImagesService, 'image-service').usage({});
    const size = Number(u.imagesSize);
    const reclaimable = Number(u.imagesReclaimable);
    const pct = size ? ` (${Math.round((reclaimable / size) * 100)}%)` : '';
    const rows = [
      {
        Type: 'Images',
        TotalCount: String(u.images),
        Active: String(u.imagesActive),
        Size: humanSize(size),
        Reclaimable: `${humanSize(reclaimable)}${pct}`,
      },
      { Type: 'Containers', TotalCount: '0', Active: '0', Size: '0B', Reclaimable: '0B' },
      { Type: 'Local Volumes', TotalCount: '0', Active: '0', Size: '0B', Reclaimable: '0B' },
      { Type: 'Build Cache', TotalCount: '0', Active: '0', Size: '0B', Reclaimable: '0B' },
    ];
    printList(out, flags.format as string | undefined, rows, () =>
      table(
        ['TYPE', 'TOTAL', 'ACTIVE', 'SIZE', 'RECLAIMABLE'],
        rows.map((r) => [r.Type, r.TotalCount, r.Active, r.Size, r.Reclaimable]),
      ),
    );
  },
};
