// Small statistics helpers: percentiles of one sample, and the median with its min–max spread
// over repetitions.

/** The p-th percentile (0..100) of `values`, by linear interpolation between closest ranks. */
export function percentile(values: ArrayLike<number>, p: number): number {
  const n = values.length;
  if (n === 0) return Number.NaN;
  const sorted = Float64Array.from(values as ArrayLike<number>).sort();
  return percentileSorted(sorted, p);
}

export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  const n = sorted.length;
  if (n === 0) return Number.NaN;
  const rank = (p / 100) * (n - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (rank - lo);
}

/** Median and spread of one figure over its repetitions. */
export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly n: number;
}

export function spread(values: readonly number[]): Spread {
  const finite = values.filter((v) => Number.isFinite(v));
  if (finite.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 };
  const sorted = Float64Array.from(finite).sort();
  return { median: percentileSorted(sorted, 50), min: sorted[0]!, max: sorted[sorted.length - 1]!, n: finite.length };
}

export function mean(values: ArrayLike<number>): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) sum += values[i]!;
  return values.length === 0 ? Number.NaN : sum / values.length;
}

/** At most `max` evenly spaced order statistics of `values` (for plotting a CDF). */
export function cdfPoints(values: ArrayLike<number>, max = 400): { x: number; q: number }[] {
  const sorted = Float64Array.from(values as ArrayLike<number>).sort();
  const n = sorted.length;
  if (n === 0) return [];
  const out: { x: number; q: number }[] = [];
  const step = Math.max(1, Math.floor(n / max));
  for (let i = 0; i < n; i += step) out.push({ x: sorted[i]!, q: (i + 1) / n });
  if (out[out.length - 1]!.q !== 1) out.push({ x: sorted[n - 1]!, q: 1 });
  return out;
}
