/**
 * Reconstructions of a tokenizer of either kind, scale by scale (`tokenizer recon`, and the
 * validation of `tokenizer train`): each scale encoded from the image area-resized to its pixel
 * size and decoded again, compared with that resized image.
 */
import type { Device } from "../engine.ts";
import { imageAt, type ImageSet } from "../data/dataset.ts";
import { Progress } from "../util/progress.ts";
import { resizeArea, upscaleNearest } from "./resize.ts";
import type { ImageTokenizer } from "./tokenizer.ts";

/** Validation images encoded and decoded at a time (bounds the image buffers). */
const RECON_CHUNK = 64;

/**
 * Encodes the validation images `val` of `set` at every scale and decodes each scale again, in
 * chunks: the summed per-image mean squared error per scale (values in [0, 1]) against the image
 * area-resized to the scale's pixel size, and the grid tiles of `count` images spread over `val`.
 */
export async function reconstruct(
  tokenizer: ImageTokenizer,
  set: ImageSet,
  val: Int32Array,
  scales: number[],
  count: number,
  device: Device,
  opts: { quiet?: boolean } = {},
): Promise<{ sqErr: Float64Array; tiles: Uint8Array[] }> {
  const p = tokenizer.patch, side = set.side;
  const L = scales.reduce((a, s) => a + s * s, 0);
  const shownCount = Math.min(count, val.length);
  // Shown images are spread evenly over the split (which is sorted, hence grouped by class).
  const shown = new Set(
    Array.from({ length: shownCount }, (_, j) => Math.floor((j * val.length) / shownCount)),
  );
  const tileSide = Math.max(side, 64); // small images are enlarged so the grid is legible
  const sqErr = new Float64Array(scales.length);
  const tiles: Uint8Array[] = [];
  const progress = opts.quiet ? undefined : new Progress("recon", val.length, "img");
  for (let start = 0; start < val.length; start += RECON_CHUNK) {
    const n = Math.min(RECON_CHUNK, val.length - start);
    const pixels = new Uint8Array(n * side * side * 3); // (n, side, side, 3)
    for (let b = 0; b < n; b++) pixels.set(imageAt(set, val[start + b]), b * side * side * 3);
    const codes = await tokenizer.encodeImages(pixels, n, side, scales, device); // (n, L)
    const decoded: Uint8Array[] = []; // per scale: (n, s*p, s*p, 3)
    let offset = 0;
    for (const s of scales) {
      const grids = new Uint16Array(n * s * s); // (n, s*s)
      for (let b = 0; b < n; b++) {
        grids.set(codes.subarray(b * L + offset, b * L + offset + s * s), b * s * s);
      }
      decoded.push(await tokenizer.decodeGrids(grids, n, s, device));
      offset += s * s;
    }
    for (let b = 0; b < n; b++) {
      const original = pixels.subarray(b * side * side * 3, (b + 1) * side * side * 3);
      const show = shown.has(start + b);
      if (show) tiles.push(upscaleNearest(original, side, tileSide));
      scales.forEach((s, k) => {
        const size = s * p * s * p * 3;
        const image = decoded[k].subarray(b * size, (b + 1) * size);
        const reference = resizeArea(original, side, s * p); // (s*p, s*p, 3) in [0, 1]
        let e = 0;
        for (let j = 0; j < size; j++) e += (image[j] / 255 - reference[j]) ** 2;
        sqErr[k] += e / size;
        if (show) tiles.push(upscaleNearest(image, s * p, tileSide));
      });
    }
    progress?.tick(n);
  }
  progress?.finish();
  return { sqErr, tiles };
}
