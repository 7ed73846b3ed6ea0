/**
 * Non-finite values (NaN, +-Inf) in a loaded tensor are refused when the file is read: a NaN
 * weight or codebook entry otherwise flows silently into images or losses.
 */
import { UserError } from "../errors.ts";

/** The number of non-finite values in `values` and the index of the first one (-1 when none). */
export function countNonFinite(values: ArrayLike<number>): { count: number; first: number } {
  let count = 0;
  let first = -1;
  for (let i = 0; i < values.length; i++) {
    // x - x is 0 for every finite x and NaN for NaN and +-Inf: one test for both.
    if (values[i] - values[i] !== 0) {
      if (count === 0) first = i;
      count++;
    }
  }
  return { count, first };
}

/**
 * Throws `WHAT holds N non-finite values (NaN or Inf), the first at index I` unless every value
 * is finite. `what` names the file and the tensor, e.g. `m/model.safetensors: tensor 'x'`.
 */
export function checkFinite(values: ArrayLike<number>, what: string): void {
  const { count, first } = countNonFinite(values);
  if (count === 0) return;
  const noun = count === 1 ? "value" : "values";
  throw new UserError(
    `${what} holds ${count} non-finite ${noun} (NaN or Inf), the first at index ${first}`,
  );
}
