// Background services (loops, relay) and extra HTTP routes (event stream, uploads) that other
// capabilities plug in. Each service has the same shape: start() returned it; stop() ends it.
import type { FastifyInstance } from 'fastify';
import type { Ctx } from './context.js';
import { eventsPlugin, relayService } from './outbox/events.js';
import { artifactExpiryLoop } from './artifacts/expire.js';
import { transferRoutes } from './artifacts/transfer.js';
import { startResolvers } from './resolvers/index.js';
import { startBuiltinQueues } from './builtin/queues.js';

export interface Service {
  name: string;
  stop(): Promise<void>;
}

type ServiceFactory = (ctx: Ctx) => Promise<Service>;
type PluginFactory = (ctx: Ctx) => (app: FastifyInstance) => void | Promise<void>;

export const serviceFactories: ServiceFactory[] = [startResolvers];
export const pluginFactories: PluginFactory[] = [];

// artifacts: the expiry loop, and the routes of the signed upload and download URLs
serviceFactories.push(async (ctx) => artifactExpiryLoop(ctx));
pluginFactories.push(transferRoutes);

export async function startServices(ctx: Ctx): Promise<Service[]> {
  const started: Service[] = [];
  for (const f of serviceFactories) started.push(await f(ctx));
  return started;
}

export function extraPlugins(ctx: Ctx) {
  return pluginFactories.map((f) => f(ctx));
}

// the outbox relay (when AMQP_URL is set) and the HTTP event stream
serviceFactories.push(relayService);
pluginFactories.push(eventsPlugin);

// built-in/succeed and built-in/fail: tasks resolved by the service itself, for demos and smoke tests
serviceFactories.push(startBuiltinQueues);
