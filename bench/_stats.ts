/** Percentiles of latency samples, as the benchmarks report them. */

/** The `p` quantile (0..1) of `sorted` (ascending), nearest rank. */
export function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}
