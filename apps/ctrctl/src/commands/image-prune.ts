import { createInterface } from 'node:readline';
import { ImagesService } from '@ctr/api/images/v1/images';
import type { Command } from '../command.js';
import { humanSize } from '../format.js';

export async function confirm(question: string): Promise<boolean> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await new Promise<string>((resolve) => {
      rl.question(question, resolve);
      rl.once('close', () => resolve(''));
    });
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}

/** docker's prune filters (`label=k=v`, `until=...`) as image-service's, dangling ones only unless `all`. */
export function imagePruneFilters(filters: string[], all: boolean): string[] {
  const out = filters.map((f) => {
    const [k, ...v] = f.split('=');
    return k === 'label' ? `labels."${v[0]}"==${v.slice(1).join('=')}` : `${k}==${v.join('=')}`;
  });
  if (!all) out.push('dangling==true');
  return out;
}

export const command: Command = {
  name: 'image prune',
  usage: 'ctrctl image prune [OPTIONS]',
  summary: 'Remove unused images',
  flags: [
    { name: 'all', short: 'a', type: 'bool', help: 'Remove all unused images, not just dangling ones' },
    { name: 'force', short: 'f', type: 'bool', help: 'Do not prompt for confirmation' },
    { name: 'filter', type: 'list', value: 'filter', help: 'Provide filter values (e.g. "label=<key>=<value>")' },
  ],
  maxArgs: 0,
  examples: ['ctrctl image prune -f', 'ctrctl image prune -a -f'],
  async run({ flags, globals, out }) {
    const all = Boolean(flags.all);
    if (!flags.force) {
      const what = all ? 'all images without at least one container associated to them' : 'all dangling images';
      if (!(await confirm(`WARNING! This will remove ${what}.\nAre you sure you want to continue? [y/N] `))) return;
    }
    const filters = imagePruneFilters(flags.filter as string[], all);
    const r = await globals.client(ImagesService, 'image-service').prune({ all: true, filters });
    if (r.deleted.length) out.write(`Deleted Images:\n${r.deleted.join('\n')}\n\n`);
    out.write(`Total reclaimed space: ${humanSize(Number(r.spaceReclaimed))}\n`);
  },
};
