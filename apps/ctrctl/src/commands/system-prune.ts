import { ContainersService, VolumesService } from '@ctr/api/containers/v1/containers';
import { ImagesService } from '@ctr/api/images/v1/images';
import { NetworksService } from '@ctr/api/networks/v1/networks';
import type { Command } from '../command.js';
import { humanSize } from '../format.js';
import { confirm, imagePruneFilters } from './image-prune.js';

/** docker system prune: stopped containers, unused networks, dangling (or -a: unused) images, and with --volumes anonymous volumes. */
export const command: Command = {
  name: 'system prune',
  usage: 'ctrctl system prune [OPTIONS]',
  summary: 'Remove unused data',
  flags: [
    { name: 'all', short: 'a', type: 'bool', help: 'Remove all unused images not just dangling ones' },
    { name: 'force', short: 'f', type: 'bool', help: 'Do not prompt for confirmation' },
    { name: 'volumes', type: 'bool', help: 'Prune anonymous volumes' },
    { name: 'filter', type: 'list', value: 'filter', help: 'Provide filter values (e.g. "label=<key>=<value>")' },
  ],
  maxArgs: 0,
  examples: ['ctrctl system prune -f', 'ctrctl system prune -a --volumes -f'],
  async run({ flags, globals, out }) {
    const all = Boolean(flags.all);
    const filters = flags.filter as string[];
    if (!flags.force) {
      const what = [
        'all stopped containers',
        'all networks not used by at least one container',
        ...(flags.volumes ? ['all anonymous volumes not used by at least one container'] : []),
        all ? 'all images without at least one container associated to them' : 'all dangling images',
      ];
      const q = `WARNING! This will remove:\n${what.map((w) => `  - ${w}\n`).join('')}\nAre you sure you want to continue? [y/N] `;
      if (!(await confirm(q))) return;
    }
    let reclaimed = 0;
    const c = await globals.client(ContainersService, 'container-service').prune({ filters });
    reclaimed += Number(c.spaceReclaimed);
    if (c.deleted.length) out.write(`Deleted Containers:\n${c.deleted.join('\n')}\n\n`);
    const n = await globals.client(NetworksService, 'network-service').prune({ filters });
    if (n.removed.length) out.write(`Deleted Networks:\n${n.removed.join('\n')}\n\n`);
    if (flags.volumes) {
      const v = await globals.client(VolumesService, 'container-service').prune({ filters, all: false });
      reclaimed += Number(v.spaceReclaimed);
      if (v.deleted.length) out.write(`Deleted Volumes:\n${v.deleted.join('\n')}\n\n`);
    }
    const i = await globals
      .client(ImagesService, 'image-service')
      .prune({ all: true, filters: imagePruneFilters(filters, all) });
    reclaimed += Number(i.spaceReclaimed);
    if (i.deleted.length) out.write(`Deleted Images:\n${i.deleted.join('\n')}\n\n`);
    out.write(`Total reclaimed space: ${humanSize(reclaimed)}\n`);
  },
};
