/**
 * Model inputs from token codes (DESIGN.md "Sequence and inputs", paper Eq. 1): a batch of
 * shard rows (codes (b, L), scales concatenated, raster order inside a scale) becomes a
 * ModelBatch of slots in sampling order: index arrays only. The engine builds the Eq. 1 inputs
 * from them and the model's codebook (Model::forward; the sampler builds them the same way), so
 * nothing here touches latents. Pure: no addon, no I/O.
 *
 * For a slot of scale k, block i, j-th token of the block, grid position p:
 * - posP = 2 + scaleOffset[k] + p, target = code of scale k at p (the engine feeds u, the
 *   previous scale's latents upsampled, at p; the learned start vector for k = 0);
 * - posQ = 2 + scaleOffset[k] + q, q = position of token (j mod |b_{i-1}|) of block i-1 (the
 *   engine feeds v, the latent of the code at q); for a scale's first block posQ = 1 (the
 *   learned start vector and position).
 * Slot 0 is the class token: posP = posQ = 0, target -1.
 */
import { UserError } from "../errors.ts";
import { layoutFor, scaleOffsets, type SlotLayout } from "../plan/layout.ts";
import type { OrderName } from "../plan/orders.ts";
import type { ModelBatch } from "../model/native_model.ts";

/** Position index of the class token. */
export const CLASS_POSITION = 0;
/** Position index of the learned "previous position" of a scale's first block. */
export const FIRST_BLOCK_POSITION = 1;

export interface InputOptions {
  scales: readonly number[];
  /** K, the codebook size: every code must be below it. */
  vocab: number;
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
  const { scales, vocab: K } = o;
  const B = labels.length;
  const L = scales.reduce((a, s) => a + s * s, 0);
  const T = 1 + L;
  if (B < 1) throw new RangeError("inputs: a batch needs at least one row");
  if (codes.length !== B * L) {
    throw new RangeError(`inputs: codes has ${codes.length} values, expected ${B} x ${L}`);
  }
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
    codes: new Int32Array(B * L),
    targets: new Int32Array(n),
    visibleEnd: new Int32Array(0),
  };
  const layouts: SlotLayout[] = [];

  for (let r = 0; r < B; r++) {
    const layout = shared ?? layoutFor(scales, o.steps, o.order, o.sequenceSeeds![r]);
    layouts.push(layout);
    for (let k = 0; k < scales.length; k++) {
      for (let p = 0; p < scales[k] * scales[k]; p++) {
        const c = codes[r * L + offsets[k] + p];
        if (!(c >= 0 && c < K)) {
          throw new UserError(
            `code ${c} at row ${r}, scale ${k} is outside the codebook of ${K} codes ` +
              `(were the shards made with another tokenizer?)`,
          );
        }
        batch.codes[r * L + offsets[k] + p] = c;
      }
    }
    const row = r * T;
    // The class token.
    batch.posP[row] = batch.posQ[row] = CLASS_POSITION;
    batch.targets[row] = -1;
    scales.forEach((side, k) => {
      const start = layout.scaleStart[k];
      for (let j = 0; j < side * side; j++) {
        const t = start + j;
        const slot = row + t;
        const p = layout.posOf[t];
        batch.posP[slot] = 2 + offsets[k] + p;
        batch.targets[slot] = batch.codes[r * L + offsets[k] + p];
        const q = layout.prevPosOf[t];
        batch.posQ[slot] = q < 0 ? FIRST_BLOCK_POSITION : 2 + offsets[k] + q;
      }
    });
  }
  // Visibility depends only on block sizes, so every row's layout agrees.
  batch.visibleEnd = Int32Array.from(layouts[0].visibleEnd);
  return { batch, layouts };
}
