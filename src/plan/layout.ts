/**
 * The slot layout of a training/sampling sequence (DESIGN.md "Sequence and
 * inputs", paper Eq. 1) as flat typed index arrays, ready for the engine.
 *
 * Slot 0 is the class token, alone in block 0. Then, scale by scale (coarse
 * to fine) and block by block, the tokens of each block in order.
 */
import { blockSizes, stepsPerScale as effectiveSteps } from "./blocks.ts";
import { validateScales } from "./scales.ts";
import { makeOrder, type OrderName } from "./orders.ts";
import { deriveSeed } from "../util/rng.ts";

/** The within-scale order used for scale `scaleIndex` of side `side`: [x, y] positions. */
export type OrderFor = (
  scaleIndex: number,
  side: number,
) => readonly (readonly [number, number])[];

/**
 * Invariants (checked by tests/plan_layout.test.ts):
 * - slots of a block are contiguous: block b covers [blockStart[b], blockEnd[b]);
 *   blocks follow each other, so blockEnd[b] = blockStart[b + 1];
 * - blockOf is non-decreasing along the sequence, and so is visibleEnd;
 * - visibleEnd[t] = blockEnd[blockOf[t]]: slot t attends to every slot < visibleEnd[t],
 *   i.e. its own block and all earlier ones (blockwise causal); the class token has
 *   visibleEnd 1 (it sees only itself);
 * - the slots of scale k are [scaleStart[k], scaleStart[k] + s_k^2) and their posOf
 *   values are a permutation of 0..s_k^2-1 (p = y * s_k + x);
 * - prevPosOf[t] is -1 for the class token and for the first block of a scale; otherwise
 *   it is posOf of token (j mod |b_{i-1}|) of the previous block of the same scale,
 *   where j is t's index within its block.
 */
export interface SlotLayout {
  /** Side of every scale, coarse to fine. */
  scales: number[];
  /** Effective steps (blocks) of every scale: min(P_k, s_k^2). */
  steps: number[];
  /** Number of slots: 1 + sum of s_k^2. */
  length: number;
  /** Number of blocks, the class token's block 0 included: 1 + sum of steps. */
  blockCount: number;

  // Per slot (length `length`).
  /** Scale index of the slot, -1 for the class token. */
  scaleOf: Int32Array;
  /** Position p = y * s + x within its scale, -1 for the class token. */
  posOf: Int32Array;
  /** Global block index; the class token is block 0. */
  blockOf: Int32Array;
  /** Paired position in the previous block of the same scale, or -1 (see invariants). */
  prevPosOf: Int32Array;
  /** Exclusive end of the slot's block: the slot sees every slot < visibleEnd. */
  visibleEnd: Int32Array;

  // Per block (length `blockCount`).
  /** First slot of the block. */
  blockStart: Int32Array;
  /** Exclusive end slot of the block. */
  blockEnd: Int32Array;
  /** Scale index of the block, -1 for block 0. */
  blockScale: Int32Array;

  // Per scale (length `scales.length`).
  /** First slot of the scale. */
  scaleStart: Int32Array;
  /** Global index of the scale's first block. */
  scaleFirstBlock: Int32Array;
}

/**
 * Builds the layout for `scales` with `steps` (one P or one per scale; clamped to
 * s_k^2) and the order of each scale from `orderFor`.
 */
export function buildLayout(
  scales: readonly number[],
  steps: number | readonly number[],
  orderFor: OrderFor,
): SlotLayout {
  validateScales(scales);
  const perScaleSteps = effectiveSteps(scales, steps);
  const length = 1 + scales.reduce((sum, s) => sum + s * s, 0);
  const blockCount = 1 + perScaleSteps.reduce((a, b) => a + b, 0);

  const scaleOf = new Int32Array(length);
  const posOf = new Int32Array(length);
  const blockOf = new Int32Array(length);
  const prevPosOf = new Int32Array(length);
  const visibleEnd = new Int32Array(length);
  const blockStart = new Int32Array(blockCount);
  const blockEnd = new Int32Array(blockCount);
  const blockScale = new Int32Array(blockCount);
  const scaleStart = new Int32Array(scales.length);
  const scaleFirstBlock = new Int32Array(scales.length);

  // The class token: block 0, alone.
  scaleOf[0] = posOf[0] = prevPosOf[0] = -1;
  blockOf[0] = 0;
  visibleEnd[0] = 1;
  blockStart[0] = 0;
  blockEnd[0] = 1;
  blockScale[0] = -1;

  let slot = 1;
  let block = 1;
  scales.forEach((side, k) => {
    const order = orderFor(k, side);
    checkOrder(order, side, k);
    scaleStart[k] = slot;
    scaleFirstBlock[k] = block;
    let rank = 0; // index into `order`
    let prevStart = -1; // rank of the first token of the previous block, -1 for none
    let prevSize = 0;
    for (const size of blockSizes(side * side, perScaleSteps[k])) {
      blockStart[block] = slot;
      blockEnd[block] = slot + size;
      blockScale[block] = k;
      for (let j = 0; j < size; j++, slot++) {
        const [x, y] = order[rank + j];
        scaleOf[slot] = k;
        posOf[slot] = y * side + x;
        blockOf[slot] = block;
        visibleEnd[slot] = slot - j + size;
        if (prevStart < 0) {
          prevPosOf[slot] = -1;
        } else {
          const [px, py] = order[prevStart + (j % prevSize)];
          prevPosOf[slot] = py * side + px;
        }
      }
      prevStart = rank;
      prevSize = size;
      rank += size;
      block++;
    }
  });

  return {
    scales: [...scales],
    steps: perScaleSteps,
    length,
    blockCount,
    scaleOf,
    posOf,
    blockOf,
    prevPosOf,
    visibleEnd,
    blockStart,
    blockEnd,
    blockScale,
    scaleStart,
    scaleFirstBlock,
  };
}

function checkOrder(order: readonly (readonly [number, number])[], side: number, k: number): void {
  if (order.length !== side * side) {
    throw new RangeError(
      `order for scale ${k} has ${order.length} positions, expected ${side * side}`,
    );
  }
  const seen = new Uint8Array(side * side);
  for (const [x, y] of order) {
    const p = y * side + x;
    if (!(x >= 0 && x < side && y >= 0 && y < side) || seen[p]) {
      throw new RangeError(`order for scale ${k} is not a permutation of the ${side}x${side} grid`);
    }
    seen[p] = 1;
  }
}

/**
 * Reorders one scale's values stored in raster order (index y * s + x) into
 * slot order: out[j] = raster[posOf[scaleStart[k] + j]].
 */
export function rasterToSlotOrder(
  layout: SlotLayout,
  scaleIndex: number,
  raster: ArrayLike<number>,
  out: Int32Array = new Int32Array(layout.scales[scaleIndex] ** 2),
): Int32Array {
  const count = layout.scales[scaleIndex] ** 2;
  if (raster.length !== count) {
    throw new RangeError(`scale ${scaleIndex} has ${count} positions, got ${raster.length} values`);
  }
  const start = layout.scaleStart[scaleIndex];
  for (let j = 0; j < count; j++) out[j] = raster[layout.posOf[start + j]];
  return out;
}

/** The inverse of rasterToSlotOrder: writes one scale's slot-ordered values back in raster order. */
export function slotToRasterOrder(
  layout: SlotLayout,
  scaleIndex: number,
  slots: ArrayLike<number>,
  out: Int32Array = new Int32Array(layout.scales[scaleIndex] ** 2),
): Int32Array {
  const count = layout.scales[scaleIndex] ** 2;
  if (slots.length !== count) {
    throw new RangeError(`scale ${scaleIndex} has ${count} positions, got ${slots.length} values`);
  }
  const start = layout.scaleStart[scaleIndex];
  for (let j = 0; j < count; j++) out[layout.posOf[start + j]] = slots[j];
  return out;
}

/**
 * A whole sequence in slot order from every scale's raster-ordered codes:
 * slot 0 holds `classValue`, the rest the codes at posOf.
 */
export function sequenceFromRaster(
  layout: SlotLayout,
  rasterPerScale: readonly ArrayLike<number>[],
  classValue: number,
): Int32Array {
  if (rasterPerScale.length !== layout.scales.length) {
    throw new RangeError(
      `expected codes for ${layout.scales.length} scales, got ${rasterPerScale.length}`,
    );
  }
  const seq = new Int32Array(layout.length);
  seq[0] = classValue;
  layout.scales.forEach((side, k) => {
    const start = layout.scaleStart[k];
    rasterToSlotOrder(layout, k, rasterPerScale[k], seq.subarray(start, start + side * side));
  });
  return seq;
}

/** scaleOffset[k] = sum of s_j^2 for j < k: where scale k starts in a concatenated sequence. */
export function scaleOffsets(scales: readonly number[]): number[] {
  const out: number[] = [];
  let sum = 0;
  for (const s of scales) {
    out.push(sum);
    sum += s * s;
  }
  return out;
}

/**
 * The seed of the random order of every scale of one sequence, keyed by a per-sequence seed, so
 * that a sequence's order does not depend on its batch or position in it.
 */
export function randomOrderSeed(sequenceSeed: number, scaleIndex: number): number {
  return deriveSeed(sequenceSeed, scaleIndex, 0x0dde5);
}

/**
 * The slot layout of one sequence for an order and steps per scale (training and sampling
 * share it). `sequenceSeed` is used by the `random` order only (a fresh permutation of every
 * scale per sequence).
 */
export function layoutFor(
  scales: readonly number[],
  steps: number | readonly number[],
  order: OrderName,
  sequenceSeed = 0,
): SlotLayout {
  return buildLayout(
    scales,
    steps,
    (k, side) =>
      order === "random"
        ? makeOrder("random", side, randomOrderSeed(sequenceSeed, k))
        : makeOrder(order, side),
  );
}
