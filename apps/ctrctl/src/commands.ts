/** Every ctrctl command, loaded only when used so that the CLI starts fast. */
import type { Command } from './command.js';

type Loader = () => Promise<{ command: Command }>;

export const COMMANDS: Record<string, { summary: string; load: Loader }> = {
  version: { summary: 'Show the ctr version information', load: () => import('./commands/version.js') },
  info: { summary: 'Display system-wide information', load: () => import('./commands/info.js') },
  events: { summary: 'Get real time events from the engine', load: () => import('./commands/events.js') },
  'system info': { summary: 'Display system-wide information', load: () => import('./commands/info.js') },
  'system events': { summary: 'Get real time events from the engine', load: () => import('./commands/events.js') },
  pull: { summary: 'Download an image from a registry', load: () => import('./commands/pull.js') },
  push: { summary: 'Upload an image to a registry', load: () => import('./commands/push.js') },
  images: { summary: 'List images', load: () => import('./commands/images.js') },
  tag: { summary: 'Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE', load: () => import('./commands/tag.js') },
  rmi: { summary: 'Remove one or more images', load: () => import('./commands/rmi.js') },
  save: { summary: 'Save one or more images to a tar archive', load: () => import('./commands/save.js') },
  load: { summary: 'Load an image from a tar archive or STDIN', load: () => import('./commands/load.js') },
  import: { summary: 'Import a root filesystem tarball as an image', load: () => import('./commands/import.js') },
  login: { summary: 'Log in to a registry', load: () => import('./commands/login.js') },
  logout: { summary: 'Log out from a registry', load: () => import('./commands/logout.js') },
  'image ls': { summary: 'List images', load: () => import('./commands/images.js') },
  'image pull': { summary: 'Download an image from a registry', load: () => import('./commands/pull.js') },
  'image push': { summary: 'Upload an image to a registry', load: () => import('./commands/push.js') },
  'image inspect': {
    summary: 'Display detailed information on one or more images',
    load: () => import('./commands/image-inspect.js'),
  },
  'image tag': {
    summary: 'Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE',
    load: () => import('./commands/tag.js'),
  },
  'image rm': { summary: 'Remove one or more images', load: () => import('./commands/rmi.js') },
  'image save': { summary: 'Save one or more images to a tar archive', load: () => import('./commands/save.js') },
  'image load': { summary: 'Load an image from a tar archive or STDIN', load: () => import('./commands/load.js') },
  'image import': {
    summary: 'Import a root filesystem tarball as an image',
    load: () => import('./commands/import.js'),
  },
  'image prune': { summary: 'Remove unused images', load: () => import('./commands/image-prune.js') },
  'network create': { summary: 'Create a network', load: () => import('./commands/network-create.js') },
  'network ls': { summary: 'List networks', load: () => import('./commands/network-ls.js') },
  'network inspect': {
    summary: 'Display detailed information on one or more networks',
    load: () => import('./commands/network-inspect.js'),
  },
  'network rm': { summary: 'Remove one or more networks', load: () => import('./commands/network-rm.js') },
  'network remove': { summary: 'Remove one or more networks', load: () => import('./commands/network-rm.js') },
  'network list': { summary: 'List networks', load: () => import('./commands/network-ls.js') },
  'network connect': {
    summary: 'Connect a container to a network',
    load: () => import('./commands/network-connect.js'),
  },
  'network disconnect': {
    summary: 'Disconnect a container from a network',
    load: () => import('./commands/network-disconnect.js'),
  },
  'network prune': { summary: 'Remove all unused networks', load: () => import('./commands/network-prune.js') },
  'system df': { summary: 'Show engine disk usage', load: () => import('./commands/system-df.js') },
  'system services': {
    summary: "List the engine's daemons: state, pid, uptime, restarts",
    load: () => import('./commands/system-services.js'),
  },
};

/** Groups: `ctrctl system ...`. */
export const GROUPS: Record<string, string> = {
  image: 'Manage images',
  network: 'Manage networks',
  system: 'Manage the engine',
};
