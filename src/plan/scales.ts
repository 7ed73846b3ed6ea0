/**
 * Scale lists: the token-grid side `s_k` of every scale, coarse to fine
 * (DESIGN.md "Scales"). Pure functions, no I/O.
 */
import { UsageError } from "../errors.ts";

/** A scale ratio: a number > 1, or "single" for one scale at the final side. */
export type Ratio = number | "single";

/** Names accepted for a ratio besides plain numbers. */
export const RATIO_NAMES = ["sqrt2", "2", "3", "4", "single"] as const;

/** Reads a ratio: "sqrt2", "single" or any number > 1 (e.g. "2", "1.5"). */
export function parseRatio(text: string): Ratio {
  const t = text.trim().toLowerCase();
  if (t === "single") return "single";
  if (t === "sqrt2" || t === "sqrt(2)") return Math.SQRT2;
  const r = Number(t);
  if (t === "" || !Number.isFinite(r)) {
    throw new UsageError(
      `ratio must be one of ${RATIO_NAMES.join(", ")} or a number > 1, got '${text}'`,
    );
  }
  if (!(r > 1)) throw new UsageError(`ratio must be greater than 1, got '${text}'`);
  return r;
}

function checkSide(finalSide: number): void {
  if (!Number.isSafeInteger(finalSide) || finalSide < 1) {
    throw new UsageError(`final side must be a positive integer, got ${finalSide}`);
  }
}

/**
 * Scales for a ratio and final side N: s_K = N, then s_{k-1} = max(1, round(s_k / r))
 * until 1 is reached. Returned coarse to fine, strictly increasing.
 *
 * For N = 16: r = 2 -> [1,2,4,8,16]; 4 -> [1,4,16]; 3 -> [1,2,5,16];
 * sqrt2 -> [1,2,3,4,6,8,11,16]; "single" -> [16].
 */
export function scalesForRatio(ratio: Ratio | string, finalSide: number): number[] {
  const r = typeof ratio === "string" ? parseRatio(ratio) : ratio;
  checkSide(finalSide);
  if (r === "single") return [finalSide];
  if (!(r > 1) || !Number.isFinite(r)) {
    throw new UsageError(`ratio must be greater than 1, got ${r}`);
  }
  const descending = [finalSide];
  let side = finalSide;
  while (side > 1) {
    let next = Math.max(1, Math.round(side / r));
    // A repeat (possible only for ratios close to 1) is dropped by stepping
    // down by one instead, so the list always shrinks and the loop ends.
    if (next >= side) next = side - 1;
    descending.push(next);
    side = next;
  }
  return descending.reverse();
}

/** Reads an explicit scale list such as "1,2,4,8": strictly increasing positive integers. */
export function parseScales(text: string): number[] {
  const parts = text.split(",").map((p) => p.trim());
  if (parts.length === 0 || parts.some((p) => p === "")) {
    throw new UsageError(`scale list must be comma-separated integers like 1,2,4,8, got '${text}'`);
  }
  const scales = parts.map((p) => {
    const n = Number(p);
    if (!/^\+?\d+$/.test(p) || !Number.isSafeInteger(n) || n < 1) {
      throw new UsageError(`scale list entries must be positive integers, got '${p}' in '${text}'`);
    }
    return n;
  });
  validateScales(scales);
  return scales;
}

/** Throws a UsageError unless `scales` is a non-empty, strictly increasing list of positive ints. */
export function validateScales(scales: readonly number[]): void {
  if (scales.length === 0) throw new UsageError("scale list must not be empty");
  for (let k = 0; k < scales.length; k++) {
    const s = scales[k];
    if (!Number.isSafeInteger(s) || s < 1) {
      throw new UsageError(`scale sides must be positive integers, got ${s}`);
    }
    if (k > 0 && s <= scales[k - 1]) {
      throw new UsageError(
        `scale list must be strictly increasing, got ${scales[k - 1]} then ${s} in ${
          scales.join(",")
        }`,
      );
    }
  }
}

/** Tokens per sequence: the class token plus every position of every scale. */
export function sequenceLength(scales: readonly number[]): number {
  return 1 + scales.reduce((sum, s) => sum + s * s, 0);
}
