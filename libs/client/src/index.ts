export { QueueClient, QueueError, type CallOptions, type QueueClientOptions } from './queue.js';
export { authorizationHeader, type Credentials } from './hawk.js';
export { sleep } from './sleep.js';
