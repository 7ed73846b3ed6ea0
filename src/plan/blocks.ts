/**
 * Blocks: an order cut into contiguous segments, one segment per sampling step
 * (DESIGN.md "Orders and blocks").
 */
import { UsageError } from "../errors.ts";

function checkSteps(steps: number, what = "steps"): void {
  if (!Number.isSafeInteger(steps) || steps < 1) {
    throw new UsageError(`${what} must be a positive integer, got ${steps}`);
  }
}

/**
 * Sizes of the blocks that cut `count` tokens into P' = min(P, count)
 * contiguous segments. Sizes differ by at most one and never decrease (the
 * larger ones last), so block i is never smaller than block i-1 and every
 * token of block i-1 can be paired with one of block i.
 *
 * blockSizes(16, 4) -> [4, 4, 4, 4]; blockSizes(10, 4) -> [2, 2, 3, 3].
 */
export function blockSizes(count: number, steps: number): number[] {
  if (!Number.isSafeInteger(count) || count < 1) {
    throw new RangeError(`token count must be a positive integer, got ${count}`);
  }
  checkSteps(steps);
  const blocks = Math.min(steps, count);
  const base = Math.floor(count / blocks);
  const larger = count % blocks; // this many blocks, at the end, get one more token
  return Array.from({ length: blocks }, (_, i) => (i < blocks - larger ? base : base + 1));
}

/** blockOfRank[i] = block of the i-th token of the order, for `count` tokens in `steps` blocks. */
export function blockOfRank(count: number, steps: number): Int32Array {
  const out = new Int32Array(count);
  let rank = 0;
  blockSizes(count, steps).forEach((size, block) => {
    out.fill(block, rank, rank + size);
    rank += size;
  });
  return out;
}

/**
 * Effective steps of each scale, min(P_k, s_k^2), from a single P for every
 * scale or a list with one P per scale.
 */
export function stepsPerScale(
  scales: readonly number[],
  steps: number | readonly number[],
): number[] {
  const perScale = typeof steps === "number" ? scales.map(() => steps) : [...steps];
  if (perScale.length !== scales.length) {
    throw new UsageError(
      `steps list has ${perScale.length} entries but there are ${scales.length} scales (${
        scales.join(",")
      })`,
    );
  }
  return perScale.map((p, k) => {
    checkSteps(p);
    return Math.min(p, scales[k] * scales[k]);
  });
}

/** Total sampling steps: sum over scales of min(P_k, s_k^2) (the class token is not a step). */
export function totalSteps(scales: readonly number[], steps: number | readonly number[]): number {
  return stepsPerScale(scales, steps).reduce((a, b) => a + b, 0);
}
