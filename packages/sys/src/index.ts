export * from './libc.js';
export * from './mountinfo.js';
export * from './proc.js';
export * from './fsat.js';
export * from './netns.js';
export * from './netlink.js';
export * from './ports.js';
export * from './rootfs.js';
