import { it } from 'node:test';
import assert from 'node:assert/strict';
import client from 'prom-client';
import { RequestHistogram } from '../services/queue/src/meta/request-histogram.js';
import { startTestQueue } from './harness/service.js';
import { slugid, taskDef } from './harness/tasks.js';
it('metrics', async () => {
  const q = await startTestQueue();
  await q.queue().ping();
  await q.queue().createTask(slugid(), taskDef());
  const text = await (await fetch(q.rootUrl + '/metrics')).text();
  await q.stop();
  assert.match(text, /conveyor_http_request_duration_seconds_count\{endpoint="ping",status="200"\} 1/);
  // the shared transactions: how many calls each served
  assert.match(text, /conveyor_batch_size_count\{operation="createTask"\} [1-9]/);
  assert.match(text, /# TYPE conveyor_batch_fallbacks_total counter/);
});

it("the request histogram exposes exactly what prom-client's Histogram would, text and JSON", async () => {
  const buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 25];
  const theirs = new client.Registry();
  const reference = new client.Histogram({ name: 'x_seconds', help: 'h', labelNames: ['endpoint', 'status'] as const, buckets, registers: [theirs] });
  const ours = new client.Registry();
  const histogram = new RequestHistogram('x_seconds', 'h', buckets, ours);
  // every bucket, its bounds exactly, beyond the last bound, several series in mixed order
  const values = [0, 0.0005, ...buckets, ...buckets.map((b) => b * 1.5), 100];
  values.forEach((v, i) => {
    const [endpoint, status] = ([['ping', 200], ['createTask', 409], ['claimWork', 200], ['ping', 500]] as const)[i % 4]!;
    reference.observe({ endpoint, status: String(status) }, v);
    histogram.observe(endpoint, status, v);
  });
  assert.equal(await ours.metrics(), await theirs.metrics());
  assert.deepEqual(await ours.getMetricsAsJSON(), await theirs.getMetricsAsJSON());
  ours.resetMetrics();
  theirs.resetMetrics();
  assert.equal(await ours.metrics(), await theirs.metrics());
});
