export * from './checkpoint.js';
export * from './error-frame.js';
export * from './heartbeat.js';
export * from './hello.js';
export * from './lease.js';
export * from './messages.js';
