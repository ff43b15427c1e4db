/** Every ctrctl command, loaded only when used so that the CLI starts fast. */
import type { Command } from './command.js';

type Loader = () => Promise<{ command: Command }>;

/**
 * The daemon a command calls first, when it is worth dialling while the
 * command loads (the commands that run containers).
 */
export const DIALS: Record<string, string> = Object.fromEntries(
  ['run', 'create', 'start', 'exec', 'stop', 'kill', 'rm', 'ps', 'logs', 'wait'].flatMap((c) => [
    [c, 'container-service'],
    [`container ${c}`, 'container-service'],
  ]),
);

export const COMMANDS: Record<string, { summary: string; load: Loader }> = {
  run: { summary: 'Create and run a new container from an image', load: () => import('./commands/run.js') },
  'container run': { summary: 'Create and run a new container from an image', load: () => import('./commands/run.js') },
  create: { summary: 'Create a new container', load: () => import('./commands/create.js') },
  'container create': { summary: 'Create a new container', load: () => import('./commands/create.js') },
  start: { summary: 'Start one or more stopped containers', load: () => import('./commands/start.js') },
  'container start': { summary: 'Start one or more stopped containers', load: () => import('./commands/start.js') },
  stop: { summary: 'Stop one or more running containers', load: () => import('./commands/stop.js') },
  'container stop': { summary: 'Stop one or more running containers', load: () => import('./commands/stop.js') },
  restart: { summary: 'Restart one or more containers', load: () => import('./commands/restart.js') },
  'container restart': { summary: 'Restart one or more containers', load: () => import('./commands/restart.js') },
  kill: { summary: 'Kill one or more running containers', load: () => import('./commands/kill.js') },
  'container kill': { summary: 'Kill one or more running containers', load: () => import('./commands/kill.js') },
  rm: { summary: 'Remove one or more containers', load: () => import('./commands/rm.js') },
  'container rm': { summary: 'Remove one or more containers', load: () => import('./commands/rm.js') },
  ps: { summary: 'List containers', load: () => import('./commands/ps.js') },
  'container ps': { summary: 'List containers', load: () => import('./commands/ps.js') },
  logs: { summary: 'Fetch the logs of a container', load: () => import('./commands/logs.js') },
  'container logs': { summary: 'Fetch the logs of a container', load: () => import('./commands/logs.js') },
  exec: { summary: 'Execute a command in a running container', load: () => import('./commands/exec.js') },
  'container exec': { summary: 'Execute a command in a running container', load: () => import('./commands/exec.js') },
  attach: {
    summary: 'Attach local standard input, output, and error streams to a running container',
    load: () => import('./commands/attach.js'),
  },
  'container attach': {
    summary: 'Attach local standard input, output, and error streams to a running container',
    load: () => import('./commands/attach.js'),
  },
  inspect: {
    summary: 'Return low-level information on containers or images',
    load: () => import('./commands/inspect.js'),
  },
  'container inspect': {
    summary: 'Return low-level information on containers or images',
    load: () => import('./commands/inspect.js'),
  },
  wait: {
    summary: 'Block until one or more containers stop, then print their exit codes',
    load: () => import('./commands/wait.js'),
  },
  'container wait': {
    summary: 'Block until one or more containers stop, then print their exit codes',
    load: () => import('./commands/wait.js'),
  },
  stats: {
    summary: 'Display a live stream of container(s) resource usage statistics',
    load: () => import('./commands/stats.js'),
  },
  'container stats': {
    summary: 'Display a live stream of container(s) resource usage statistics',
    load: () => import('./commands/stats.js'),
  },
  top: { summary: 'Display the running processes of a container', load: () => import('./commands/top.js') },
  'container top': { summary: 'Display the running processes of a container', load: () => import('./commands/top.js') },
  pause: { summary: 'Pause all processes within one or more containers', load: () => import('./commands/pause.js') },
  'container pause': {
    summary: 'Pause all processes within one or more containers',
    load: () => import('./commands/pause.js'),
  },
  unpause: {
    summary: 'Unpause all processes within one or more containers',
    load: () => import('./commands/unpause.js'),
  },
  'container unpause': {
    summary: 'Unpause all processes within one or more containers',
    load: () => import('./commands/unpause.js'),
  },
  port: {
    summary: 'List port mappings or a specific mapping for the container',
    load: () => import('./commands/port.js'),
  },
  'container port': {
    summary: 'List port mappings or a specific mapping for the container',
    load: () => import('./commands/port.js'),
  },
  rename: { summary: 'Rename a container', load: () => import('./commands/rename.js') },
  cp: {
    summary: 'Copy files/folders between a container and the local filesystem',
    load: () => import('./commands/cp.js'),
  },
  'container cp': {
    summary: 'Copy files/folders between a container and the local filesystem',
    load: () => import('./commands/cp.js'),
  },
  commit: { summary: "Create a new image from a container's changes", load: () => import('./commands/commit.js') },
  'container commit': {
    summary: "Create a new image from a container's changes",
    load: () => import('./commands/commit.js'),
  },
  'container rename': { summary: 'Rename a container', load: () => import('./commands/rename.js') },
  'container ls': { summary: 'List containers', load: () => import('./commands/ps.js') },
  'container list': { summary: 'List containers', load: () => import('./commands/ps.js') },
  'container remove': { summary: 'Remove one or more containers', load: () => import('./commands/rm.js') },
  'container prune': { summary: 'Remove all stopped containers', load: () => import('./commands/container-prune.js') },
  'volume create': { summary: 'Create a volume', load: () => import('./commands/volume-create.js') },
  'volume ls': { summary: 'List volumes', load: () => import('./commands/volume-ls.js') },
  'volume list': { summary: 'List volumes', load: () => import('./commands/volume-ls.js') },
  'volume inspect': {
    summary: 'Display detailed information on one or more volumes',
    load: () => import('./commands/volume-inspect.js'),
  },
  'volume rm': { summary: 'Remove one or more volumes', load: () => import('./commands/volume-rm.js') },
  'volume remove': { summary: 'Remove one or more volumes', load: () => import('./commands/volume-rm.js') },
  'volume prune': { summary: 'Remove unused local volumes', load: () => import('./commands/volume-prune.js') },
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
  'system prune': { summary: 'Remove unused data', load: () => import('./commands/system-prune.js') },
  'system df': { summary: 'Show engine disk usage', load: () => import('./commands/system-df.js') },
  'system services': {
    summary: "List the engine's daemons: state, pid, uptime, restarts",
    load: () => import('./commands/system-services.js'),
  },
};

/** Groups: `ctrctl system ...`. */
export const GROUPS: Record<string, string> = {
  image: 'Manage images',
  container: 'Manage containers',
  network: 'Manage networks',
  volume: 'Manage volumes',
  system: 'Manage the engine',
};
