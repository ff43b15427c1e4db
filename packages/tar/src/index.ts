export * from './reader.js';
export * from './types.js';
export * from './writer.js';
