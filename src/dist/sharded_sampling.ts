/**
 * Sampling over several ranks: rank r samples the images [begin, end) of the run (rankRange),
 * each image with its own seed stream (SamplingOptions.imageIndex0), decodes them, and rank 0
 * gathers the codes and pixels in image order. The result is the single process's, byte for
 * byte: sampling and decoding are per image.
 */
import type { SampledCodes } from "../sample/sampler.ts";
import { gatherBytes, world } from "./world.ts";

function bytesOf(a: Int32Array | Float32Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/**
 * Every rank's images and codes on rank 0, in image order: `mine` and `images` are this rank's
 * (its images [begin, end) of `labels`, decoded (side, side, 3) each). Returns null on the
 * other ranks. A single process gets its own arguments back.
 */
export function gatherSamples(
  mine: SampledCodes,
  images: Uint8Array[],
  labels: Int32Array,
): { sampled: SampledCodes; images: Uint8Array[] } | null {
  if (world().size === 1) return { sampled: mine, images };
  const pixels = new Uint8Array(images.reduce((a, im) => a + im.length, 0));
  let at = 0;
  for (const im of images) {
    pixels.set(im, at);
    at += im.length;
  }
  const allPixels = gatherBytes(pixels);
  const codes = gatherBytes(bytesOf(mine.codes));
  const stepOf = gatherBytes(bytesOf(mine.stepOf));
  const entropy = mine.entropy ? gatherBytes(bytesOf(mine.entropy)) : null;
  // Per-rank timings: the slowest rank's is the run's.
  const seconds = gatherBytes(bytesOf(Float32Array.of(mine.seconds)));
  const passes = gatherBytes(bytesOf(Int32Array.of(mine.forwardPasses)));
  if (!world().isRoot) return null;
  const n = labels.length;
  const perImage = images.length > 0 ? images[0].length : allPixels!.length / n;
  const copy = (b: Uint8Array) => b.slice().buffer; // aligned copies for the typed views
  return {
    sampled: {
      ...mine,
      codes: new Int32Array(copy(codes!)),
      labels: Int32Array.from(labels),
      stepOf: new Int32Array(copy(stepOf!)),
      entropy: entropy ? new Float32Array(copy(entropy)) : undefined,
      stepCodes: undefined,
      forwardPasses: new Int32Array(copy(passes!)).reduce((a, b) => a + b, 0),
      seconds: Math.max(...new Float32Array(copy(seconds!))),
    },
    images: Array.from(
      { length: n },
      (_, i) => allPixels!.subarray(i * perImage, (i + 1) * perImage),
    ),
  };
}
