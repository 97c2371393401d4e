// Moving the service's clock (ctx.clock) instead of waiting: deadlines, claim expiry, ±15 min
// checks. Authentication keeps real time, as it must for Hawk.
import type { TestQueue } from './service.js';

export function shiftClock(q: TestQueue, offsetMs: number): void {
  q.service.ctx.clock = { now: () => new Date(Date.now() + offsetMs) };
}

export function resetClock(q: TestQueue): void {
  shiftClock(q, 0);
}
