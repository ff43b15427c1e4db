export * from './capabilities.js';
export * from './defaults.js';
export * from './spec.js';
export * from './validate.js';
export * from './generate.js';
export * from './seccomp.js';
export * from './changes.js';
