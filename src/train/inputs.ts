/**
 * Model inputs from token codes (DESIGN.md "Sequence and inputs", paper Eq. 1): a batch of
 * shard rows (codes (b, L), scales concatenated, raster order inside a scale) becomes a
 * ModelBatch of slots in sampling order. Pure: no addon, no I/O.
 *
 * For a slot of scale k, block i, j-th token of the block, grid position p:
 * - posP = 2 + scaleOffset[k] + p, target = code of scale k at p;
 * - u = the previous scale's latents upsampled bilinearly (half-pixel centres) to s_k x s_k, at
 *   p; for k = 0 the learned start vector (uLearned = 1, uLatent zeros);
 * - v = the latent of the code at q = position of token (j mod |b_{i-1}|) of block i-1,
 *   posQ = 2 + scaleOffset[k] + q; for a scale's first block the learned start vector and
 *   position (vLearned = 1, posQ = 1).
 * Slot 0 is the class token: posP = posQ = 0, target -1, no learned flags, zero latents.
 */
import { UserError } from "../errors.ts";
import { layoutFor, scaleOffsets, type SlotLayout } from "../plan/layout.ts";
import type { OrderName } from "../plan/orders.ts";
import type { ModelBatch } from "../model/native_model.ts";

/** Position index of the class token. */
export const CLASS_POSITION = 0;
/** Position index of the learned "previous position" of a scale's first block. */
export const FIRST_BLOCK_POSITION = 1;

/**
 * 1-D bilinear weights for resizing `inSize` samples to `outSize` with half-pixel centres
 * (PyTorch align_corners=False): src = (dst + 0.5) * inSize / outSize - 0.5, clamped to
 * [0, inSize - 1]; dst takes (1 - w) of sample i0 and w of sample i1.
 */
export function bilinearTaps(
  inSize: number,
  outSize: number,
): { i0: Int32Array; i1: Int32Array; w: Float64Array } {
  const i0 = new Int32Array(outSize), i1 = new Int32Array(outSize), w = new Float64Array(outSize);
  const scale = inSize / outSize;
  for (let d = 0; d < outSize; d++) {
    const src = Math.min(Math.max((d + 0.5) * scale - 0.5, 0), inSize - 1);
    const lo = Math.floor(src);
    i0[d] = lo;
    i1[d] = Math.min(lo + 1, inSize - 1);
    w[d] = src - lo;
  }
  return { i0, i1, w };
}

/**
 * Bilinear resize of a (sIn, sIn, D) grid of vectors, raster order, to (sOut, sOut, D), with
 * half-pixel centres. Computed in double, stored as float32.
 */
export function upsampleBilinear(
  src: Float32Array, // (sIn * sIn, D)
  sIn: number,
  sOut: number,
  D: number,
  out: Float32Array = new Float32Array(sOut * sOut * D), // (sOut * sOut, D)
): Float32Array {
  if (src.length !== sIn * sIn * D) {
    throw new RangeError(`upsample: source has ${src.length} values, expected ${sIn * sIn * D}`);
  }
  const t = bilinearTaps(sIn, sOut);
  for (let y = 0; y < sOut; y++) {
    const y0 = t.i0[y], y1 = t.i1[y], wy = t.w[y];
    for (let x = 0; x < sOut; x++) {
      const x0 = t.i0[x], x1 = t.i1[x], wx = t.w[x];
      const a = (y0 * sIn + x0) * D, b = (y0 * sIn + x1) * D;
      const c = (y1 * sIn + x0) * D, e = (y1 * sIn + x1) * D;
      const w00 = (1 - wy) * (1 - wx), w01 = (1 - wy) * wx, w10 = wy * (1 - wx), w11 = wy * wx;
      const o = (y * sOut + x) * D;
      for (let d = 0; d < D; d++) {
        out[o + d] = w00 * src[a + d] + w01 * src[b + d] + w10 * src[c + d] + w11 * src[e + d];
      }
    }
  }
  return out;
}

export interface InputOptions {
  scales: readonly number[];
  /** (K, latentDim): the tokenizer's code vectors. */
  codebook: Float32Array;
  latentDim: number;
  /** One P for every scale or one per scale. */
  steps: number | readonly number[];
  order: OrderName;
  /** One seed per row for the `random` order (see randomOrderSeed); ignored by the others. */
  sequenceSeeds?: ArrayLike<number>;
}

export interface BuiltBatch {
  batch: ModelBatch;
  /** The layout of every row (one shared object when the order is not random). */
  layouts: SlotLayout[];
}

/**
 * The ModelBatch for `codes` (b, L) and `labels` (b) (labels already dropped to the null class
 * where wanted). In training u and v come from the ground-truth codes.
 */
export function buildModelBatch(
  codes: ArrayLike<number>, // (b, L)
  labels: Int32Array, // (b)
  o: InputOptions,
): BuiltBatch {
  const { scales, codebook, latentDim: D } = o;
  const B = labels.length;
  const L = scales.reduce((a, s) => a + s * s, 0);
  const T = 1 + L;
  if (B < 1) throw new RangeError("inputs: a batch needs at least one row");
  if (codes.length !== B * L) {
    throw new RangeError(`inputs: codes has ${codes.length} values, expected ${B} x ${L}`);
  }
  if (codebook.length % D !== 0) {
    throw new RangeError(`inputs: codebook length ${codebook.length} is not a multiple of ${D}`);
  }
  const K = codebook.length / D;
  const random = o.order === "random";
  if (random && (!o.sequenceSeeds || o.sequenceSeeds.length !== B)) {
    throw new RangeError(`inputs: the random order needs one sequence seed per row (${B})`);
  }
  const offsets = scaleOffsets(scales);
  const shared = random ? undefined : layoutFor(scales, o.steps, o.order);

  const n = B * T;
  const batch: ModelBatch = {
    batch: B,
    slots: T,
    labels: Int32Array.from(labels),
    posP: new Int32Array(n),
    posQ: new Int32Array(n),
    uLatent: new Float32Array(n * D),
    vLatent: new Float32Array(n * D),
    uLearned: new Uint8Array(n),
    vLearned: new Uint8Array(n),
    targets: new Int32Array(n),
    visibleEnd: new Int32Array(0),
  };
  const layouts: SlotLayout[] = [];
  const maxSide = Math.max(...scales);
  const prevGrid = new Float32Array(maxSide * maxSide * D);
  const upGrid = new Float32Array(maxSide * maxSide * D);

  for (let r = 0; r < B; r++) {
    const layout = shared ?? layoutFor(scales, o.steps, o.order, o.sequenceSeeds![r]);
    layouts.push(layout);
    const row = r * T;
    const rowCodes = (k: number, p: number) => {
      const c = codes[r * L + offsets[k] + p];
      if (!(c >= 0 && c < K)) {
        throw new UserError(
          `code ${c} at row ${r}, scale ${k} is outside the codebook of ${K} codes ` +
            `(were the shards made with another tokenizer?)`,
        );
      }
      return c;
    };
    // The class token.
    batch.posP[row] = batch.posQ[row] = CLASS_POSITION;
    batch.targets[row] = -1;

    scales.forEach((side, k) => {
      const count = side * side;
      // u: the previous scale's latents, upsampled to this scale.
      let up: Float32Array | undefined;
      if (k > 0) {
        const prevSide = scales[k - 1];
        const prev = prevGrid.subarray(0, prevSide * prevSide * D);
        for (let p = 0; p < prevSide * prevSide; p++) {
          const c = rowCodes(k - 1, p);
          prev.set(codebook.subarray(c * D, (c + 1) * D), p * D);
        }
        up = upsampleBilinear(prev, prevSide, side, D, upGrid.subarray(0, count * D));
      }
      const start = layout.scaleStart[k];
      for (let j = 0; j < count; j++) {
        const t = start + j;
        const slot = row + t;
        const p = layout.posOf[t];
        batch.posP[slot] = 2 + offsets[k] + p;
        batch.targets[slot] = rowCodes(k, p);
        if (up) batch.uLatent.set(up.subarray(p * D, (p + 1) * D), slot * D);
        else batch.uLearned[slot] = 1;
        const q = layout.prevPosOf[t];
        if (q < 0) {
          batch.vLearned[slot] = 1;
          batch.posQ[slot] = FIRST_BLOCK_POSITION;
        } else {
          const c = rowCodes(k, q);
          batch.vLatent.set(codebook.subarray(c * D, (c + 1) * D), slot * D);
          batch.posQ[slot] = 2 + offsets[k] + q;
        }
      }
    });
  }
  // Visibility depends only on block sizes, so every row's layout agrees.
  batch.visibleEnd = Int32Array.from(layouts[0].visibleEnd);
  return { batch, layouts };
}
