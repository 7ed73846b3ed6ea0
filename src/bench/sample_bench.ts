/**
 * The sampling benchmark (`checkerboard bench sample`): time per image of the native
 * KV-cached sampler at batch 1 and at a larger batch, after a warm-up call, median and spread
 * over repeats; the model's FLOP rate during sampling as a fraction of the engine's sgemm rate
 * on the same matmul shapes, measured in the same run (the machine is shared and noisy, so
 * only the ratio is comparable between runs).
 *
 * Sampling FLOPs per image (guidance doubles the rows):
 *   rows x sum over slots t of (2 * matmulParamsPerSlot + depth * 4 * visible(t) * width)
 * where visible(t) is the number of keys slot t attends to (its block's end; 1 for the class
 * token). AdaLN rows, computed once per image, and the sampling draws are left out.
 */
import { linearSeconds } from "../engine.ts";
import type { NativeModel } from "../model/native_model.ts";
import { matmulParamsPerSlot } from "../model/config.ts";
import { sampleCodes, samplingLayout, type SamplingOptions } from "../sample/sampler.ts";
import type { SlotLayout } from "../plan/layout.ts";
import { Rng } from "../util/rng.ts";

export function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export function randomFloats(n: number, rng: Rng): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.next() - 0.5;
  return a;
}

/** Model FLOPs of sampling one image with `layout` (see the file comment). */
export function samplingFlopsPerImage(
  model: NativeModel,
  layout: SlotLayout,
  guided: boolean,
): number {
  const c = model.config;
  const perSlot = 2 * matmulParamsPerSlot(c);
  let flops = 0;
  for (let t = 0; t < layout.length; t++) {
    flops += perSlot + c.depth * 4 * layout.visibleEnd[t] * c.width;
  }
  return (guided ? 2 : 1) * flops;
}

/**
 * The rate (FLOP/s) of the model's own linear (linearSeconds: sgemm on cpu, the bf16 kernel on
 * cuda) on the forward matmuls of every step of a sampling call of
 * `images` images: (rows x W) by qkv, attention output, MLP up, MLP down and head weights, with
 * rows = images (x2 with guidance) x the step's slots.
 */
export async function samplingSgemmRate(
  model: NativeModel,
  layout: SlotLayout,
  images: number,
  guided: boolean,
  repeats: number,
): Promise<number> {
  const c = model.config, W = c.width, F = c.mlpRatio * W, K = c.vocab;
  const shapes: [number, number][] = [[W, 3 * W], [W, W], [W, F], [F, W], [W, K]];
  const rowsOfStep = new Map<number, number>(); // rows -> how many steps have them
  for (let b = 1; b < layout.blockCount; b++) {
    const m = layout.blockEnd[b] - (b === 1 ? 0 : layout.blockStart[b]);
    const rows = (guided ? 2 : 1) * images * m;
    rowsOfStep.set(rows, (rowsOfStep.get(rows) ?? 0) + 1);
  }
  let flops = 0, seconds = 0;
  for (const [rows, count] of rowsOfStep) {
    for (const [k, n] of shapes) {
      const { seconds: times } = await linearSeconds(
        model.device,
        { rows, in: k, out: n },
        repeats,
      );
      flops += count * 2 * rows * n * k;
      seconds += count * median(times);
    }
  }
  return flops / seconds;
}

export interface SampleBenchPoint {
  batch: number;
  /** Median seconds per image over the repeats. */
  secondsPerImage: number;
  /** Fastest and slowest repeat, seconds per image. */
  minSecondsPerImage: number;
  maxSecondsPerImage: number;
  imagesPerSec: number;
  slotsPerSec: number;
  modelGflops: number;
  sgemmGflops: number;
  fractionOfSgemm: number;
}

/** Times sampling `batch` images per call (one warm-up call, then `repeats` timed calls). */
export async function benchSamplePoint(
  model: NativeModel,
  codebook: Float32Array,
  options: Omit<SamplingOptions, "batch">,
  batch: number,
  repeats: number,
): Promise<SampleBenchPoint> {
  const c = model.config;
  const labels = Int32Array.from({ length: batch }, (_, i) => (i * 7919) % c.classes);
  const run = async () => {
    const r = await sampleCodes(model, codebook, labels, { ...options, batch });
    return r.seconds / batch;
  };
  await run(); // warm-up: buffers, first touches, thread start
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) times.push(await run());
  const perImage = median(times);
  const layout = samplingLayout(c.scales, options, 0);
  const guided = options.guidance !== 0;
  const flops = samplingFlopsPerImage(model, layout, guided);
  const sgemm = await samplingSgemmRate(model, layout, batch, guided, repeats);
  return {
    batch,
    secondsPerImage: perImage,
    minSecondsPerImage: Math.min(...times),
    maxSecondsPerImage: Math.max(...times),
    imagesPerSec: 1 / perImage,
    slotsPerSec: (layout.length - 1) / perImage,
    modelGflops: flops / perImage / 1e9,
    sgemmGflops: sgemm / 1e9,
    fractionOfSgemm: flops / perImage / sgemm,
  };
}
