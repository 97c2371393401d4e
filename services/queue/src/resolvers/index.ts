// The background resolvers as one service: dependency resolution (woken by NOTIFY), claim expiry,
// deadlines and expiration. Each is a loop of the one shape (loops/loop.ts) that selects its work
// with SKIP LOCKED, so any number of processes may run them against one database.
import type { Ctx } from '../context.js';
import { dependencyChannel } from '../deps/resolve.js';
import type { Loop } from '../loops/loop.js';
import type { Service } from '../services.js';
import { claimExpiryLoop } from './claim-expiry.js';
import { deadlineLoop } from './deadlines.js';
import { dependencyLoop } from './dependencies.js';
import { expirationLoop } from './expiration.js';
import { listen } from './listen.js';

/**
 * Workers of the dependency loop in each process. A 10,000-dependent fan-out is 20 batches; with
 * the database on the same 2 cores, 3 workers unblock it in about half the time of one
 * (bench/graph), and keep a few pool connections for the API.
 */
const dependencyWorkers = 3;

export interface ResolverLoops {
  /** The first worker of the dependency loop (tests run it once). */
  dependencies: Loop;
  dependencyWorkers: Loop[];
  claimExpiry: Loop;
  deadlines: Loop;
  expiration: Loop;
}

const running = new WeakMap<Ctx, ResolverLoops>();

/** The loops running for this service, for tests and benchmarks to poke or run once. */
export function resolverLoops(ctx: Ctx): ResolverLoops | undefined {
  return running.get(ctx);
}

export async function startResolvers(ctx: Ctx): Promise<Service> {
  // listen first: if the database is unreachable nothing has started that would need stopping
  let loops: ResolverLoops | undefined;
  const listener = await listen(ctx, dependencyChannel, () => loops?.dependencyWorkers.forEach((l) => l.poke()));
  const workers = Array.from({ length: dependencyWorkers }, () => dependencyLoop(ctx));
  loops = {
    dependencies: workers[0]!,
    dependencyWorkers: workers,
    claimExpiry: claimExpiryLoop(ctx),
    deadlines: deadlineLoop(ctx),
    expiration: expirationLoop(ctx),
  };
  running.set(ctx, loops);
  const started = loops;
  return {
    name: 'resolvers',
    async stop() {
      await listener.stop();
      const { dependencies: _first, dependencyWorkers: workers, ...others } = started;
      await Promise.all([...workers, ...Object.values(others)].map((l: Loop) => l.stop()));
      running.delete(ctx);
    },
  };
}
