export * from './libc.js';
export * from './mountinfo.js';
export * from './proc.js';
export * from './fsat.js';
