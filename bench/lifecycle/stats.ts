// Latency samples and their percentiles, and the small formatting helpers the report uses.

export class Samples {
  private values: number[] = [];

  add(ms: number): void {
    this.values.push(ms);
  }

  get count(): number {
    return this.values.length;
  }

  /** Nearest-rank percentile in ms; NaN when empty. */
  percentile(p: number): number {
    if (this.values.length === 0) return NaN;
    const sorted = [...this.values].sort((a, b) => a - b);
    const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
    return sorted[rank]!;
  }

  summary(): LatencySummary {
    return { count: this.count, p50: this.percentile(50), p99: this.percentile(99), max: this.percentile(100) };
  }
}

export interface LatencySummary {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

export const ms = (n: number): string => (Number.isFinite(n) ? `${n.toFixed(n < 10 ? 2 : 1)} ms` : 'n/a');

export function latencyLine(name: string, s: LatencySummary): string {
  return `${name.padEnd(18)} p50 ${ms(s.p50).padStart(9)}   p99 ${ms(s.p99).padStart(9)}   max ${ms(s.max).padStart(9)}   (n=${s.count})`;
}
