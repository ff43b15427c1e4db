/**
 * What docker gives a container when nothing else is said: mounts, devices,
 * masked and read-only paths, capabilities (moby's oci/defaults.go and
 * daemon/oci_linux.go are the reference).
 */
import { DEFAULT_CAPABILITIES } from './capabilities.js';
import type { Device, Mount, Spec } from './spec.js';

export const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

export const DEFAULT_MASKED_PATHS = [
  '/proc/asound',
  '/proc/acpi',
  '/proc/kcore',
  '/proc/keys',
  '/proc/latency_stats',
  '/proc/timer_list',
  '/proc/timer_stats',
  '/proc/sched_debug',
  '/proc/scsi',
  '/sys/firmware',
  '/sys/devices/virtual/powercap',
];

export const DEFAULT_READONLY_PATHS = ['/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger'];

export function defaultMounts(): Mount[] {
  return [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev',
      type: 'tmpfs',
      source: 'tmpfs',
      options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'],
    },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['ro', 'nosuid', 'noexec', 'nodev'] },
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    {
      destination: '/dev/shm',
      type: 'tmpfs',
      source: 'shm',
      options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'],
    },
  ];
}

/** The devices every container gets in its /dev (runc's AllowedDevices that are created). */
export function defaultDevices(): Device[] {
  const c = (path: string, major: number, minor: number): Device => ({
    type: 'c',
    path,
    major,
    minor,
    fileMode: 0o666,
    uid: 0,
    gid: 0,
  });
  return [
    c('/dev/null', 1, 3),
    c('/dev/zero', 1, 5),
    c('/dev/full', 1, 7),
    c('/dev/random', 1, 8),
    c('/dev/urandom', 1, 9),
    c('/dev/tty', 5, 0),
  ];
}

/** A complete spec for `args` in `rootfs`, as docker would run it with no options. */
export function defaultSpec(rootfs: string, args: string[]): Spec {
  const caps = [...DEFAULT_CAPABILITIES];
  return {
    ociVersion: '1.1.0',
    process: {
      terminal: false,
      user: { uid: 0, gid: 0 },
      args,
      env: [`PATH=${DEFAULT_PATH}`],
      cwd: '/',
      capabilities: { bounding: caps, effective: caps, permitted: caps, inheritable: [], ambient: [] },
      noNewPrivileges: false,
    },
    root: { path: rootfs, readonly: false },
    hostname: '',
    mounts: defaultMounts(),
    linux: {
      namespaces: [
        { type: 'pid' },
        { type: 'ipc' },
        { type: 'uts' },
        { type: 'mount' },
        { type: 'network' },
        { type: 'cgroup' },
      ],
      maskedPaths: [...DEFAULT_MASKED_PATHS],
      readonlyPaths: [...DEFAULT_READONLY_PATHS],
      devices: [],
      resources: { devices: [{ allow: false, access: 'rwm' }] },
    },
  };
}
