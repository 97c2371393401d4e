// The per-endpoint request-duration histogram, observed on every request. prom-client's Histogram
// hashes the label object and turns each bucket bound into a string key on every observation (a
// few µs per request under load, more than the rest of the metrics hook); this one counts into
// arrays found by two Map lookups and builds the same series only when /metrics is scraped.
import type { Registry } from 'prom-client';

interface Series {
  labels: { endpoint: string; status: string };
  /** observations per bucket, not cumulative; the last one is +Inf */
  counts: number[];
  sum: number;
  count: number;
}

/** What the registry reads from a metric (the shape prom-client's own histograms produce). */
interface MetricValue {
  value: number;
  metricName: string;
  labels: Record<string, string | number>;
  exemplar: null | undefined;
}

export class RequestHistogram {
  readonly type = 'histogram';
  readonly aggregator = 'sum';
  private readonly byEndpoint = new Map<string, Map<number, Series>>();
  /** in order of first observation, as prom-client lists them */
  private readonly series: Series[] = [];

  constructor(
    readonly name: string,
    readonly help: string,
    private readonly buckets: readonly number[],
    registry: Registry,
  ) {
    registry.registerMetric(this as never);
  }

  observe(endpoint: string, status: number, seconds: number): void {
    let byStatus = this.byEndpoint.get(endpoint);
    if (!byStatus) this.byEndpoint.set(endpoint, (byStatus = new Map()));
    let s = byStatus.get(status);
    if (!s) {
      s = { labels: { endpoint, status: String(status) }, counts: new Array<number>(this.buckets.length + 1).fill(0), sum: 0, count: 0 };
      byStatus.set(status, s);
      this.series.push(s);
    }
    let i = 0;
    while (i < this.buckets.length && seconds > this.buckets[i]!) i++;
    s.counts[i]! += 1;
    s.sum += seconds;
    s.count += 1;
  }

  get(): { name: string; help: string; type: string; values: MetricValue[]; aggregator: string } {
    const values: MetricValue[] = [];
    for (const s of this.series) {
      let cumulative = 0;
      for (let i = 0; i <= this.buckets.length; i++) {
        cumulative += s.counts[i]!;
        values.push({
          value: cumulative,
          metricName: `${this.name}_bucket`,
          exemplar: null,
          labels: { le: i < this.buckets.length ? this.buckets[i]! : '+Inf', ...s.labels },
        });
      }
      values.push({ value: s.sum, metricName: `${this.name}_sum`, exemplar: undefined, labels: { ...s.labels } });
      values.push({ value: s.count, metricName: `${this.name}_count`, exemplar: undefined, labels: { ...s.labels } });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  reset(): void {
    this.byEndpoint.clear();
    this.series.length = 0;
  }
}
