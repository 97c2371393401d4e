// How events plug into the queue process: the relay as a background service (when AMQP_URL is
// set), the HTTP event stream as a route, and their heartbeat checks.
import type { FastifyInstance } from 'fastify';
import type { Ctx } from '../context.js';
import { heartbeatChecks } from '../meta/api.js';
import type { Service } from '../services.js';
import { brokerHealth, outboxHealth } from './health.js';
import { OutboxRelay } from './relay.js';
import { eventsRoutes } from './stream.js';

function addCheck(check: () => Promise<Record<string, unknown>>): () => void {
  heartbeatChecks.push(check);
  return () => {
    const i = heartbeatChecks.indexOf(check);
    if (i >= 0) heartbeatChecks.splice(i, 1);
  };
}

export async function relayService(ctx: Ctx): Promise<Service> {
  if (!ctx.config.amqpUrl) return { name: 'outbox-relay (off: AMQP_URL unset)', stop: async () => {} };
  const relay = new OutboxRelay(ctx).start();
  const remove = addCheck(async () => ({ broker: brokerHealth(relay) }));
  return {
    name: relay.name,
    async stop() {
      remove();
      await relay.stop();
    },
  };
}

export function eventsPlugin(ctx: Ctx) {
  return (app: FastifyInstance) => {
    eventsRoutes(ctx)(app);
    const remove = addCheck(async () => ({ outbox: await outboxHealth(ctx) }));
    app.addHook('onClose', async () => remove());
  };
}
