export * from './engine.js';
export * from './images.js';
export * from './lan.js';
export * from './leaks.js';
export * from './nats.js';
export * from './registry.js';
export * from './util.js';
export * from './tree.js';
