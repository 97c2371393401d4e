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

export interface ResolverLoops {
  dependencies: Loop;
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
  const listener = await listen(ctx, dependencyChannel, () => loops?.dependencies.poke());
  loops = {
    dependencies: dependencyLoop(ctx),
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
      await Promise.all(Object.values(started).map((l: Loop) => l.stop()));
      running.delete(ctx);
    },
  };
}
