/**
 * K-means for the patch codebook: k-means++ seeding, then Lloyd iterations
 * whose nearest-code search runs in the native engine (a GEMM plus argmin).
 */
import { nearestCodes } from "../engine.ts";
import { Rng } from "../util/rng.ts";
import { Progress } from "../util/progress.ts";

export interface KMeansOptions {
  k: number;
  iterations: number;
  seed: number;
  device: "cpu" | "cuda";
  /** Points used for the k-means++ seeding (a random subset; seeding is O(n k d)). */
  seedingSample?: number;
  quiet?: boolean;
}

export interface KMeansResult {
  /** (k, d) */
  centroids: Float32Array;
  /** Mean squared distance of a point to its centroid, after each iteration. */
  inertia: number[];
}

/** k-means++: each next centre is drawn with probability proportional to D(x)^2. */
export function kmeansPlusPlus(
  points: Float32Array, // (n, d)
  n: number,
  d: number,
  k: number,
  rng: Rng,
): Float32Array {
  const centroids = new Float32Array(k * d);
  const minDist = new Float64Array(n).fill(Infinity);
  let chosen = rng.int(n);
  for (let c = 0; c < k; c++) {
    centroids.set(points.subarray(chosen * d, (chosen + 1) * d), c * d);
    let total = 0;
    for (let i = 0; i < n; i++) {
      let dist = 0;
      for (let j = 0; j < d; j++) {
        const diff = points[i * d + j] - centroids[c * d + j];
        dist += diff * diff;
      }
      if (dist < minDist[i]) minDist[i] = dist;
      total += minDist[i];
    }
    if (c + 1 === k) break;
    if (total <= 0) {
      // Fewer distinct points than k: duplicate centres are harmless, they stay unused.
      chosen = rng.int(n);
      continue;
    }
    let target = rng.next() * total;
    chosen = n - 1;
    for (let i = 0; i < n; i++) {
      target -= minDist[i];
      if (target < 0) {
        chosen = i;
        break;
      }
    }
  }
  return centroids;
}

/**
 * `size` rows of `points` for the seeding: all of them in order when size === n, else rows drawn
 * uniformly with replacement from `rng`.
 */
export function sampleRows(
  points: Float32Array, // (n, d)
  n: number,
  d: number,
  size: number,
  rng: Rng,
): Float32Array {
  const sample = new Float32Array(size * d); // (size, d)
  for (let i = 0; i < size; i++) {
    const from = size === n ? i : rng.int(n);
    sample.set(points.subarray(from * d, (from + 1) * d), i * d);
  }
  return sample;
}

/**
 * A Lloyd step's accumulation: per cluster the sum of its members (`sums`, (k, d)) and their
 * count (`counts`, (k)), both overwritten; returns the summed squared distance.
 */
export function sumClusters(
  points: Float32Array, // (n, d)
  n: number,
  d: number,
  index: Int32Array, // (n): each point's cluster
  dist2: Float32Array, // (n): its squared distance to that cluster's centre
  sums: Float64Array, // (k, d)
  counts: Int32Array, // (k)
): number {
  sums.fill(0);
  counts.fill(0);
  let total = 0;
  for (let i = 0; i < n; i++) {
    const c = index[i];
    counts[c]++;
    total += dist2[i];
    for (let j = 0; j < d; j++) sums[c * d + j] += points[i * d + j];
  }
  return total;
}

export async function kmeans(
  points: Float32Array, // (n, d)
  n: number,
  d: number,
  opts: KMeansOptions,
): Promise<KMeansResult> {
  const { k, iterations } = opts;
  const rng = new Rng(opts.seed);
  const sampleSize = Math.min(n, opts.seedingSample ?? 20000);
  const sample = sampleRows(points, n, d, sampleSize, rng); // (sampleSize, d)
  const centroids = kmeansPlusPlus(sample, sampleSize, d, k, rng);
  const inertia: number[] = [];
  const progress = new Progress("k-means", iterations, "iter", { quiet: opts.quiet });
  const sums = new Float64Array(k * d);
  const counts = new Int32Array(k);
  for (let it = 0; it < iterations; it++) {
    const { index, dist2 } = await nearestCodes(opts.device, points, n, d, centroids, k);
    const total = sumClusters(points, n, d, index, dist2, sums, counts);
    inertia.push(total / n);
    // Empty clusters restart at the points farthest from their centres.
    const empty = [];
    for (let c = 0; c < k; c++) if (counts[c] === 0) empty.push(c);
    const farthest = empty.length ? farthestPoints(dist2, empty.length) : [];
    for (let c = 0; c < k; c++) {
      if (counts[c] > 0) {
        for (let j = 0; j < d; j++) centroids[c * d + j] = sums[c * d + j] / counts[c];
      }
    }
    empty.forEach((c, e) => {
      const src = farthest[e];
      centroids.set(points.subarray(src * d, (src + 1) * d), c * d);
    });
    progress.tick(
      1,
      `mse ${(total / n).toExponential(3)}${empty.length ? ` reseeded ${empty.length}` : ""}`,
    );
  }
  progress.finish();
  return { centroids, inertia };
}

/** Indices of the `m` largest values of `dist2`, largest first (ties: lower index first). */
export function farthestPoints(dist2: Float32Array, m: number): number[] {
  if (m === 0) return [];
  const order = Array.from(dist2.keys()).sort((a, b) => dist2[b] - dist2[a] || a - b);
  return order.slice(0, m);
}
