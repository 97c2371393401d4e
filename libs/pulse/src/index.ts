export * from './exchanges.js';
export * from './pattern.js';
export * from './bindings.js';
export * from './backoff.js';
export * from './publisher.js';
export * from './consumer.js';
export * from './event-stream.js';
