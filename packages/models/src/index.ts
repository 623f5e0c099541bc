export * from './backend.js';
export * from './checkpoint/index.js';
export * from './nn/index.js';
export * from './training/index.js';
