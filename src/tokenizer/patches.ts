/**
 * Cutting a scale of an image into patch vectors and pasting code vectors back.
 * A patch vector is the p x p x 3 values of a patch in (row, column, channel)
 * order, in [0, 1]; patches are listed in raster order over the s x s grid.
 */
import { resizeArea } from "./resize.ts";

/** Patch vectors of image `rgb` (side, side, 3) at grid side `s`: (s*s, p*p*3). */
export function extractPatches(rgb: Uint8Array, side: number, s: number, p: number): Float32Array {
  const px = s * p;
  const img = resizeArea(rgb, side, px); // (px, px, 3)
  const d = p * p * 3;
  const out = new Float32Array(s * s * d);
  for (let gy = 0; gy < s; gy++) {
    for (let gx = 0; gx < s; gx++) {
      const base = (gy * s + gx) * d;
      for (let y = 0; y < p; y++) {
        const src = ((gy * p + y) * px + gx * p) * 3;
        out.set(img.subarray(src, src + p * 3), base + y * p * 3);
      }
    }
  }
  return out;
}

/** Pastes the code vectors of an s x s grid of codes into a (s*p, s*p, 3) uint8 image. */
export function pastePatches(
  codes: ArrayLike<number>,
  codebook: Float32Array,
  s: number,
  p: number,
): Uint8Array {
  const px = s * p;
  const d = p * p * 3;
  const out = new Uint8Array(px * px * 3);
  for (let gy = 0; gy < s; gy++) {
    for (let gx = 0; gx < s; gx++) {
      const vec = codebook.subarray(codes[gy * s + gx] * d, (codes[gy * s + gx] + 1) * d);
      for (let y = 0; y < p; y++) {
        const dst = ((gy * p + y) * px + gx * p) * 3;
        for (let i = 0; i < p * 3; i++) {
          out[dst + i] = Math.max(0, Math.min(255, Math.round(vec[y * p * 3 + i] * 255)));
        }
      }
    }
  }
  return out;
}
