// Generated documents: the API reference, the exchange reference and the JSON schemas, served
// under the same paths Taskcluster uses so its tooling finds them.
import type { FastifyInstance } from 'fastify';
import { exchanges, type ExchangeDefinition } from '@conveyor/pulse';
import { schemas } from '@conveyor/schemas';
import { routeParams, type Endpoint } from './endpoint.js';
import { apiPrefix } from './server.js';

export function apiReference(endpoints: Endpoint[], rootUrl: string) {
  return {
    $schema: '/schemas/common/api-reference-v0.json#',
    apiVersion: 'v1',
    serviceName: 'queue',
    title: 'Queue API Documentation',
    description: 'Conveyor: the Taskcluster Queue v1 API, with every event delivered through a transactional outbox.',
    rootUrl,
    entries: endpoints.map((e) => ({
      type: 'function',
      name: e.name,
      title: e.title,
      description: e.description,
      category: e.category,
      stability: e.stability,
      method: e.method.toLowerCase(),
      route: e.route,
      args: routeParams(e.route),
      query: e.query ?? [],
      ...(e.input ? { input: `v1/${e.input.replace(/^v1\//, '')}#` } : {}),
      ...(e.output ? { output: `v1/${e.output.replace(/^v1\//, '')}#` } : {}),
      ...(e.scopes ? { scopes: e.scopes } : {}),
    })),
  };
}

export function exchangeReference(exchangePrefix: string, rootUrl: string) {
  return {
    $schema: '/schemas/common/exchanges-reference-v0.json#',
    apiVersion: 'v1',
    serviceName: 'queue',
    title: 'Queue AMQP Exchanges',
    description: 'Every task state change, published from the outbox with publisher confirms.',
    exchangePrefix,
    rootUrl,
    entries: Object.values(exchanges).map((x: ExchangeDefinition) => ({
      type: 'topic-exchange',
      exchange: x.name,
      name: x.name.replace(/-([a-z])/g, (_m, c: string) => c.toUpperCase()),
      title: x.title,
      description: x.title,
      schema: `${x.schema}#`,
      routingKey: x.routingKey.map((w) => ({
        name: w.name,
        summary: w.name,
        required: w.required,
        maxSize: w.maxSize,
        multipleWords: !!w.multipleWords,
        ...(w.constant ? { constant: w.constant } : {}),
      })),
    })),
  };
}

export function referenceRoutes(endpoints: Endpoint[], rootUrl: string, exchangePrefix: string) {
  return (app: FastifyInstance) => {
    const api = apiReference(endpoints, rootUrl);
    const ex = exchangeReference(exchangePrefix, rootUrl);
    app.get('/references/queue/v1/api.json', async () => api);
    app.get('/references/queue/v1/exchanges.json', async () => ex);
    app.get(`${apiPrefix}/openapi.json`, async () => api);
    app.get<{ Params: { name: string } }>('/schemas/queue/v1/:name', async (req, reply) => {
      const schema = schemas[`v1/${req.params.name.replace(/#$/, '')}`];
      if (!schema) {
        return reply.code(404).send({ code: 'ResourceNotFound', message: `No schema ${req.params.name}`, requestInfo: {} });
      }
      return { ...schema, $id: `${rootUrl}/schemas/queue/v1/${req.params.name}#` };
    });
  };
}
