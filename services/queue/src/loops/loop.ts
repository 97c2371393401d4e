// Background loops have one shape: runOnce() does a bounded batch and says how much it did; a
// full batch runs again at once, a short one waits for the interval. start/stop are idempotent,
// and tests call runOnce() directly instead of waiting.
import type { Ctx } from '../context.js';
import type { Service } from '../services.js';

export interface LoopDefinition {
  name: string;
  /** Wait between batches when the last one was not full. */
  intervalMs: (ctx: Ctx) => number;
  /** Does one batch; returns how many items it handled and whether the batch was full. */
  runOnce: (ctx: Ctx) => Promise<LoopResult>;
}

export interface LoopResult {
  handled: number;
  full: boolean;
  /** When the next item falls due, if sooner than the interval (time-driven loops wake for it). */
  nextDueMs?: number;
}

export interface Loop extends Service {
  runOnce(): Promise<LoopResult>;
  /** Wakes the loop now (e.g. when a test moved the clock). */
  poke(): void;
}

export function defineLoop(def: LoopDefinition) {
  return (ctx: Ctx): Loop => {
    let stopped = false;
    let timer: NodeJS.Timeout | undefined;
    let wake: (() => void) | undefined;
    let failures = 0;
    // a poke while a batch runs must not be lost: the batch may have looked before the new work
    let poked = false;
    const runOnce = () => def.runOnce(ctx);

    const run = async () => {
      while (!stopped) {
        poked = false;
        let full = false;
        let nextDueMs: number | undefined;
        try {
          const r = await runOnce();
          full = r.full;
          nextDueMs = r.nextDueMs;
          failures = 0;
        } catch (err) {
          failures += 1;
          ctx.log.error({ err, loop: def.name, failures }, 'background loop failed; retrying');
        }
        if (stopped) break;
        if (full || poked) continue;
        // back off on repeated failures (database away), up to 30 s
        const wait =
          failures > 0 ? Math.min(30_000, def.intervalMs(ctx) * 2 ** failures) : Math.max(0, Math.min(def.intervalMs(ctx), nextDueMs ?? Infinity));
        await new Promise<void>((resolve) => {
          wake = resolve;
          timer = setTimeout(resolve, wait);
        });
      }
    };
    const done = run();
    return {
      name: def.name,
      runOnce,
      poke: () => {
        poked = true;
        clearTimeout(timer);
        wake?.();
      },
      async stop() {
        stopped = true;
        clearTimeout(timer);
        wake?.();
        await done;
      },
    };
  };
}
