// Prometheus metrics at GET /metrics: process defaults plus per-endpoint request durations.
// Other capabilities register their own gauges on `registry`.
import type { FastifyInstance } from 'fastify';
import client from 'prom-client';
import { RequestHistogram } from './request-histogram.js';

export const registry = new client.Registry();
client.collectDefaultMetrics({ register: registry, prefix: 'conveyor_' });

const requestDuration = new RequestHistogram(
  'conveyor_http_request_duration_seconds',
  'API request duration by endpoint name and status code',
  [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 25],
  registry,
);

export function metricsRoutes(app: FastifyInstance): void {
  // a callback hook, not an async one: no promise per request
  app.addHook('onResponse', (req, reply, done) => {
    const name = (req.routeOptions?.config as { name?: string } | undefined)?.name;
    if (name) requestDuration.observe(name, reply.statusCode, reply.elapsedTime / 1000);
    done();
  });
  app.get('/metrics', async (_req, reply) => {
    reply.header('content-type', registry.contentType);
    return registry.metrics();
  });
}
