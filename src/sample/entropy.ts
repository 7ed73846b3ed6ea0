/**
 * Entropy statistics of sampled images (paper 4.5, Figures 6 and 7): per step, the mean over
 * images of each image's mean entropy of the locations sampled at that step, with its 25th and
 * 75th percentiles; per scale, the entropy of every location averaged over images.
 *
 * Inputs are laid out like SampledCodes: (n, L) with scales concatenated and raster order
 * inside a scale; entropy in bits.
 */
import { scaleOffsets } from "../plan/layout.ts";

/** Percentile q in [0, 1] of ascending `sorted` values, with linear interpolation (numpy's default). */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  const n = sorted.length;
  if (n === 0) return NaN;
  const at = q * (n - 1);
  const lo = Math.floor(at), hi = Math.min(n - 1, lo + 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo);
}

export interface StepEntropy {
  /** 0-based step. */
  step: number;
  /** Scale index of the locations sampled at this step. */
  scale: number;
  /** Locations sampled at this step (of the first image; the same for every image). */
  locations: number;
  /** Over images of the per-image mean entropy (bits) of this step's locations. */
  mean: number;
  p25: number;
  p75: number;
}

/** Scale index of each location of a row: (L). */
export function scaleOfLocation(scales: readonly number[]): Int32Array {
  const L = scales.reduce((a, s) => a + s * s, 0);
  const out = new Int32Array(L);
  scaleOffsets(scales).forEach((start, k) => out.fill(k, start, start + scales[k] * scales[k]));
  return out;
}

/**
 * Scale index of each step (totalSteps), read from one image's stepOf row (L): a step samples
 * locations of one scale only. Steps that sample nothing in the row get -1.
 */
export function scaleOfSteps(
  stepOfRow: ArrayLike<number>, // (L)
  scales: readonly number[],
  totalSteps: number,
): Int32Array {
  const out = new Int32Array(totalSteps).fill(-1);
  const scaleOf = scaleOfLocation(scales);
  for (let j = 0; j < stepOfRow.length; j++) out[stepOfRow[j]] = scaleOf[j];
  return out;
}

/**
 * Per-step statistics over `n` images. Image i's value for step s is the mean entropy of its
 * locations j with stepOf[i, j] == s; the mean and percentiles are taken over images.
 */
export function stepEntropyStats(
  entropy: Float32Array, // (n, L) bits
  stepOf: Int32Array, // (n, L) 0-based step
  n: number,
  scales: readonly number[],
  totalSteps: number,
): StepEntropy[] {
  const L = scales.reduce((a, s) => a + s * s, 0);
  if (entropy.length !== n * L || stepOf.length !== n * L) {
    throw new RangeError(`entropy and stepOf must be (${n}, ${L})`);
  }
  const perImage = new Float64Array(totalSteps * n); // (totalSteps, n) mean per image and step
  const counts = new Int32Array(totalSteps);
  for (let i = 0; i < n; i++) {
    counts.fill(0);
    for (let j = 0; j < L; j++) {
      const s = stepOf[i * L + j];
      perImage[s * n + i] += entropy[i * L + j];
      counts[s]++;
    }
    for (let s = 0; s < totalSteps; s++) {
      perImage[s * n + i] = counts[s] > 0 ? perImage[s * n + i] / counts[s] : NaN;
    }
  }
  const scaleOf = n > 0 ? scaleOfSteps(stepOf.subarray(0, L), scales, totalSteps) : null;
  const firstCounts = new Int32Array(totalSteps);
  for (let j = 0; j < (n > 0 ? L : 0); j++) firstCounts[stepOf[j]]++;
  return Array.from({ length: totalSteps }, (_, s) => {
    const values = Array.from(perImage.subarray(s * n, (s + 1) * n)).filter((v) => !isNaN(v))
      .sort((a, b) => a - b);
    const mean = values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN;
    return {
      step: s,
      scale: scaleOf ? scaleOf[s] : -1,
      locations: firstCounts[s],
      mean,
      p25: percentile(values, 0.25),
      p75: percentile(values, 0.75),
    };
  });
}

/**
 * Per scale, the entropy of every location averaged over images `images` (default: all):
 * one (s*s) raster map per scale.
 */
export function entropyMaps(
  entropy: Float32Array, // (n, L) bits
  n: number,
  scales: readonly number[],
  images?: readonly number[],
): Float32Array[] {
  const L = scales.reduce((a, s) => a + s * s, 0);
  const which = images ?? Array.from({ length: n }, (_, i) => i);
  const sum = new Float64Array(L);
  for (const i of which) for (let j = 0; j < L; j++) sum[j] += entropy[i * L + j];
  const starts = scaleOffsets(scales);
  return scales.map((s, k) =>
    Float32Array.from(
      sum.subarray(starts[k], starts[k] + s * s),
      (v) => (which.length ? v / which.length : 0),
    )
  );
}
