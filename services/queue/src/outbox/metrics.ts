// Prometheus series of the relay, on the process registry (GET /metrics).
import client from 'prom-client';
import { registry } from '../meta/metrics.js';

export const publishedTotal = new client.Counter({
  name: 'conveyor_outbox_published_total',
  help: 'Outbox rows this process published and marked after the broker confirmed them',
  registers: [registry],
});

export const publishFailuresTotal = new client.Counter({
  name: 'conveyor_outbox_publish_failures_total',
  help: 'Batches whose publish or confirms failed (they stay in the outbox and go out again)',
  registers: [registry],
});

export const relayActive = new client.Gauge({
  name: 'conveyor_relay_active',
  help: '1 while this process holds the relay lock and is connected to RabbitMQ',
  registers: [registry],
});
