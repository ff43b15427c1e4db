export * from './reader.js';
export * from './types.js';
export * from './writer.js';
export * from './compression.js';
