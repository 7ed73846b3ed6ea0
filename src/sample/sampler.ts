/**
 * The sampling driver (DESIGN.md "Sampling"): turns a list of class labels into multiscale
 * token codes by running the addon's KV-cached blockwise sampler batch by batch. The whole
 * per-step loop (inputs, forward against the KV cache, guidance, temperature, top-k, top-p,
 * multinomial draw) runs natively; this file builds the plan, splits the images into batches,
 * and turns the slot-ordered results into raster-ordered codes like the token shards.
 *
 * Image i of a call draws its random numbers from (seed, imageIndex0 + i, slot), so an image
 * does not depend on the batch size or on the other images of its batch.
 */
import type { NativeModel, NativeSampleRequest } from "../model/native_model.ts";
import type { OrderName } from "../plan/orders.ts";
import { layoutFor, scaleOffsets } from "../plan/layout.ts";
import type { SlotLayout } from "../plan/layout.ts";
import { UserError } from "../errors.ts";
import { deriveSeed } from "../util/rng.ts";

export interface SamplingOptions {
  /** One P for every scale or one per scale (clamped to s^2 per scale). */
  steps: number | readonly number[];
  order: OrderName;
  /** CFG weight w: l = l_c + w (l_c - l_u); 0 is plain conditional sampling. */
  guidance: number;
  /** w is 0 for the first `guidanceStart` steps. */
  guidanceStart: number;
  /** > 0; 0 means greedy (argmax). */
  temperature: number;
  /** Keep the k most likely codes; 0 keeps all. */
  topK: number;
  /** Keep the smallest set of codes whose probability reaches p; 1 keeps all. */
  topP: number;
  seed: number;
  /** Images per native call. */
  batch: number;
  /** Index of the first image for the random-number keys (default 0). */
  imageIndex0?: number;
  /** Also return the entropy of every location's sampling distribution. */
  entropy?: boolean;
  /** Also return the codes after every step. */
  stepCodes?: boolean;
}

export interface SampledCodes {
  scales: number[];
  /** Total steps of the plan = forward passes per batch. */
  totalSteps: number;
  /** L = sum of s^2. */
  length: number;
  /** (n, L) codes, scales concatenated, raster order inside a scale (as in the token shards). */
  codes: Int32Array;
  labels: Int32Array;
  /** (n, L) step (0-based) at which each location was sampled. */
  stepOf: Int32Array;
  /** (n, L) entropy in bits of each location's final sampling distribution, when asked for. */
  entropy?: Float32Array;
  /** (totalSteps, n, L) codes after each step, -1 where not sampled yet, when asked for. */
  stepCodes?: Int32Array;
  /** Forward passes run over all batches. */
  forwardPasses: number;
  /** Wall time of the native sampling calls, in seconds. */
  seconds: number;
}

/**
 * Bytes of host memory the arrays of a SampledCodes of `n` images of `length` tokens take, so a
 * caller can refuse a run that would not fit before anything is allocated.
 */
export function sampledCodesBytes(
  n: number,
  length: number,
  o: Pick<SamplingOptions, "entropy" | "stepCodes" | "steps">,
  totalSteps = 0,
): number {
  const perImage = length * 4 * (2 + (o.entropy ? 1 : 0)) + 4 +
    (o.stepCodes ? totalSteps * length * 4 : 0);
  return n * perImage;
}

/** Share of the machine's available memory one sampling run may plan to use. */
const MEMORY_SHARE = 0.8;

/**
 * Refuses (UserError) a run whose result arrays, decoded images (side x side x 3, twice: the
 * images and samples.npz's array) would not fit in the memory available, before any of it is
 * allocated. `available` is the machine's free memory in bytes (default: as the OS reports it).
 */
export function checkSampleMemory(
  n: number,
  length: number,
  side: number,
  o: Pick<SamplingOptions, "entropy" | "stepCodes" | "steps">,
  available = Deno.systemMemoryInfo().available,
) {
  const bytes = sampledCodesBytes(n, length, o) + 2 * n * side * side * 3;
  if (bytes > MEMORY_SHARE * available) {
    const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;
    throw new UserError(
      `sampling ${n} images of ${side}x${side} needs about ${gib(bytes)} of memory, ` +
        `${gib(available)} is available; lower --count or --per-class`,
    );
  }
}

/** Progress after each step of each batch: images finished so far, and steps done in the batch. */
export type SampleProgress = (imagesDone: number, stepInBatch: number, totalSteps: number) => void;

/** The seed of image `imageIndex`'s random within-scale orders. */
export function imageOrderSeed(seed: number, imageIndex: number): number {
  return deriveSeed(seed, imageIndex, 0x5a3b1e);
}

/** The layout of image `imageIndex` (the random order draws a permutation per image). */
export function samplingLayout(
  scales: readonly number[],
  o: Pick<SamplingOptions, "steps" | "order" | "seed">,
  imageIndex: number,
): SlotLayout {
  return layoutFor(
    scales,
    o.steps,
    o.order,
    o.order === "random" ? imageOrderSeed(o.seed, imageIndex) : 0,
  );
}

function checkOptions(
  model: NativeModel,
  codebook: Float32Array,
  labels: Int32Array,
  o: SamplingOptions,
) {
  const c = model.config;
  if (codebook.length !== c.vocab * c.latentDim) {
    throw new UserError(
      `the codebook has ${codebook.length} values but the model needs ${c.vocab} x ${c.latentDim}`,
    );
  }
  for (const l of labels) {
    if (!(Number.isInteger(l) && l >= 0 && l < c.classes)) {
      throw new UserError(`class ${l} is outside the model's classes 0..${c.classes - 1}`);
    }
  }
  const steps = typeof o.steps === "number" ? [o.steps] : o.steps;
  if (typeof o.steps !== "number" && o.steps.length !== c.scales.length) {
    throw new UserError(
      `steps per scale lists ${o.steps.length} values but the model has ${c.scales.length} scales`,
    );
  }
  if (steps.some((p) => !(Number.isInteger(p) && p >= 1))) {
    throw new UserError(`steps per scale must be integers >= 1, got ${steps.join(",")}`);
  }
  if (!(o.temperature >= 0) || !(o.topP > 0 && o.topP <= 1) || !(o.topK >= 0)) {
    throw new UserError("temperature must be >= 0, top-p in (0, 1] and top-k >= 0");
  }
  if (!(Number.isInteger(o.batch) && o.batch >= 1)) {
    throw new UserError(`batch must be a positive integer, got ${o.batch}`);
  }
}

/**
 * The native request for images `labels` with random keys `imageIndex`: `layouts` holds one
 * layout shared by all of them, or one per image (the random order).
 */
export function sampleRequest(
  layouts: readonly SlotLayout[],
  labels: Int32Array, // (B)
  imageIndex: Int32Array, // (B)
  o: SamplingOptions,
  wantLogits = false,
): NativeSampleRequest {
  const T = layouts[0].length;
  const posOf = new Int32Array(layouts.length * T), prevPosOf = new Int32Array(layouts.length * T);
  layouts.forEach((l, i) => {
    posOf.set(l.posOf, i * T);
    prevPosOf.set(l.prevPosOf, i * T);
  });
  return {
    labels,
    imageIndex,
    blockStart: layouts[0].blockStart,
    blockEnd: layouts[0].blockEnd,
    blockScale: layouts[0].blockScale,
    posOf,
    prevPosOf,
    guidance: o.guidance,
    guidanceStart: o.guidanceStart,
    temperature: o.temperature,
    topK: o.topK,
    topP: o.topP,
    seed: o.seed,
    entropy: !!o.entropy,
    stepCodes: !!o.stepCodes,
    logits: wantLogits,
  };
}

/**
 * Samples one image per label. Images are run `o.batch` at a time; image i uses the random
 * keys of image `imageIndex0 + i`.
 */
export async function sampleCodes(
  model: NativeModel,
  codebook: Float32Array, // (K, latentDim)
  labels: Int32Array, // (n)
  o: SamplingOptions,
  onProgress?: SampleProgress,
): Promise<SampledCodes> {
  checkOptions(model, codebook, labels, o);
  model.setCodebook(codebook);
  const scales = model.config.scales;
  const offsets = scaleOffsets(scales);
  const n = labels.length;
  const base = o.imageIndex0 ?? 0;
  const shared = samplingLayout(scales, o, base);
  const T = shared.length, L = T - 1, steps = shared.blockCount - 1;
  const out: SampledCodes = {
    scales: [...scales],
    totalSteps: steps,
    length: L,
    codes: new Int32Array(n * L),
    labels: Int32Array.from(labels),
    stepOf: new Int32Array(n * L),
    entropy: o.entropy ? new Float32Array(n * L) : undefined,
    stepCodes: o.stepCodes ? new Int32Array(steps * n * L).fill(-1) : undefined,
    forwardPasses: 0,
    seconds: 0,
  };

  for (let first = 0; first < n; first += o.batch) {
    const B = Math.min(o.batch, n - first);
    const layouts = o.order === "random"
      ? Array.from({ length: B }, (_, i) => samplingLayout(scales, o, base + first + i))
      : [shared];
    const request = sampleRequest(
      layouts,
      labels.subarray(first, first + B),
      Int32Array.from({ length: B }, (_, i) => base + first + i),
      o,
    );
    const t0 = performance.now();
    const r = await model.sample(request, (step) => onProgress?.(first, step + 1, steps));
    out.seconds += (performance.now() - t0) / 1000;
    out.forwardPasses += r.forwardPasses;

    // Slot order -> raster order per scale.
    for (let i = 0; i < B; i++) {
      const layout = layouts.length > 1 || o.order === "random" ? layouts[i] : shared;
      const img = first + i;
      for (let t = 1; t < T; t++) {
        const k = layout.scaleOf[t];
        const at = img * L + offsets[k] + layout.posOf[t];
        out.codes[at] = r.codes[i * T + t];
        out.stepOf[at] = layout.blockOf[t] - 1;
        if (out.entropy) out.entropy[at] = r.entropy![i * T + t];
        if (out.stepCodes) {
          for (let s = 0; s < steps; s++) {
            out.stepCodes[(s * n + img) * L + offsets[k] + layout.posOf[t]] =
              r.stepCodes![(s * B + i) * T + t];
          }
        }
      }
    }
    onProgress?.(first + B, steps, steps);
  }
  return out;
}
