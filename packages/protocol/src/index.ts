export * from './common.js';
export * from './datasets.js';
export * from './health.js';
export * from './jobs.js';
export * from './models.js';
export * from './objective-mix.js';
export * from './runs.js';
export * from './worker/index.js';
