// Reconnect delays shared by the publisher and the consumer: exponential with jitter, capped, so a
// broker that comes back is found within `maxMs` and a fleet does not reconnect in lockstep.

export interface BackoffOptions {
  /** First delay (default 100 ms). */
  initialMs?: number;
  /** Largest delay (default 5 s). */
  maxMs?: number;
}

export function backoffDelay(attempt: number, opts: BackoffOptions = {}): number {
  const initial = opts.initialMs ?? 100;
  const max = opts.maxMs ?? 5000;
  const base = Math.min(max, initial * 2 ** Math.max(0, attempt - 1));
  return Math.round(base * (0.8 + Math.random() * 0.2));
}

// the one back-off wait of the project (it leaves no listener on a long-lived signal); the pulse
// library and its users get it from here too
export { sleep } from '@conveyor/client';

/** The slice of a pino logger the library uses; any such logger (or console-like object) fits. */
export interface PulseLog {
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentLog: PulseLog = { info() {}, warn() {}, error() {} };
