import assert from "node:assert/strict";
import {
  buildLayout,
  layoutFor,
  rasterToSlotOrder,
  scaleOffsets,
  sequenceFromRaster,
  type SlotLayout,
  slotToRasterOrder,
} from "../src/plan/layout.ts";
import { blockSizes } from "../src/plan/blocks.ts";
import { checkerboardOrder, makeOrder, ORDER_NAMES } from "../src/plan/orders.ts";

/** Checks every documented invariant of a layout. */
function checkInvariants(L: SlotLayout) {
  assert.equal(L.length, 1 + L.scales.reduce((a, s) => a + s * s, 0));
  assert.equal(L.blockCount, 1 + L.steps.reduce((a, b) => a + b, 0));
  assert.equal(L.visibleEnd[0], 1);
  assert.equal(L.blockOf[0], 0);
  assert.equal(L.scaleOf[0], -1);
  assert.equal(L.prevPosOf[0], -1);
  for (let t = 1; t < L.length; t++) {
    assert.ok(L.visibleEnd[t] >= L.visibleEnd[t - 1], "visibleEnd non-decreasing");
    assert.ok(L.blockOf[t] >= L.blockOf[t - 1], "blockOf non-decreasing");
  }
  for (let t = 0; t < L.length; t++) {
    const b = L.blockOf[t];
    // A token sees its own block and every earlier one, and nothing later.
    assert.equal(L.visibleEnd[t], L.blockEnd[b]);
    assert.ok(L.blockStart[b] <= t && t < L.blockEnd[b]);
    for (let c = 0; c < L.blockCount; c++) {
      const visible = L.blockEnd[c] <= L.visibleEnd[t];
      assert.equal(visible, c <= b, `slot ${t} vs block ${c}`);
    }
  }
  for (let b = 1; b < L.blockCount; b++) assert.equal(L.blockStart[b], L.blockEnd[b - 1]);
  assert.equal(L.blockEnd[L.blockCount - 1], L.length);

  L.scales.forEach((s, k) => {
    const start = L.scaleStart[k];
    const positions = [...L.posOf.subarray(start, start + s * s)].sort((a, b) => a - b);
    assert.deepEqual(positions, Array.from({ length: s * s }, (_, i) => i));
    for (let t = start; t < start + s * s; t++) assert.equal(L.scaleOf[t], k);
    // Blocks of this scale: sizes from blockSizes, prevPosOf from the previous block.
    const first = L.scaleFirstBlock[k];
    const sizes = blockSizes(s * s, L.steps[k]);
    sizes.forEach((size, i) => {
      const b = first + i;
      assert.equal(L.blockScale[b], k);
      assert.equal(L.blockEnd[b] - L.blockStart[b], size);
      const prev = i === 0 ? [] : [...L.posOf.subarray(L.blockStart[b - 1], L.blockEnd[b - 1])];
      for (let j = 0; j < size; j++) {
        const t = L.blockStart[b] + j;
        if (i === 0) assert.equal(L.prevPosOf[t], -1);
        else {
          assert.ok(prev.includes(L.prevPosOf[t]), "prevPosOf is in the previous block");
          assert.equal(L.prevPosOf[t], prev[j % prev.length]);
        }
      }
    });
  });
}

Deno.test("layout of ratio 2, N = 16, P = 4: 342 slots, 18 blocks", () => {
  const L = buildLayout([1, 2, 4, 8, 16], 4, (_k, s) => checkerboardOrder(s));
  assert.equal(L.length, 342);
  assert.equal(L.blockCount, 18);
  assert.deepEqual(L.steps, [1, 4, 4, 4, 4]);
  assert.deepEqual([...L.scaleStart], [1, 2, 6, 22, 86]);
  assert.deepEqual([...L.scaleFirstBlock], [1, 2, 6, 10, 14]);
  // The 1x1 scale is one block seeing the class token and itself.
  assert.equal(L.visibleEnd[1], 2);
  assert.equal(L.prevPosOf[1], -1);
  // 2x2 scale with P = 4: one token per block, each paired with the one before.
  assert.deepEqual([...L.posOf.subarray(2, 6)], [0, 3, 1, 2]);
  assert.deepEqual([...L.prevPosOf.subarray(2, 6)], [-1, 0, 3, 1]);
  assert.deepEqual([...L.visibleEnd.subarray(2, 6)], [3, 4, 5, 6]);
  checkInvariants(L);
});

Deno.test("layout invariants for every order, uneven blocks and per-scale steps", () => {
  for (const name of ORDER_NAMES) {
    checkInvariants(buildLayout([1, 2, 3, 5], [1, 3, 4, 7], (k, s) => makeOrder(name, s, k)));
    checkInvariants(buildLayout([1, 2, 3, 4, 6, 8, 11], 5, (k, s) => makeOrder(name, s, k)));
    checkInvariants(buildLayout([16], 1, (k, s) => makeOrder(name, s, k)));
  }
});

Deno.test("buildLayout rejects orders that are not permutations", () => {
  assert.throws(() => buildLayout([2], 2, () => [[0, 0], [0, 0], [1, 0], [1, 1]]), RangeError);
  assert.throws(() => buildLayout([2], 2, () => [[0, 0]]), RangeError);
});

Deno.test("raster <-> slot order round trip and whole sequences", () => {
  const scales = [1, 2, 4];
  const L = buildLayout(scales, 2, (k, s) => makeOrder("random", s, k));
  const raster = scales.map((s, k) => Int32Array.from({ length: s * s }, (_, p) => 100 * k + p));
  scales.forEach((_s, k) => {
    const slots = rasterToSlotOrder(L, k, raster[k]);
    for (let j = 0; j < slots.length; j++) {
      assert.equal(slots[j], raster[k][L.posOf[L.scaleStart[k] + j]]);
    }
    assert.deepEqual(slotToRasterOrder(L, k, slots), raster[k]);
  });
  const seq = sequenceFromRaster(L, raster, -7);
  assert.equal(seq.length, L.length);
  assert.equal(seq[0], -7);
  for (let t = 1; t < L.length; t++) assert.equal(seq[t], 100 * L.scaleOf[t] + L.posOf[t]);
  assert.throws(() => rasterToSlotOrder(L, 2, new Int32Array(3)), RangeError);
});

Deno.test("the sequence plan of training and sampling: scale offsets and layoutFor", () => {
  assert.deepEqual(scaleOffsets([1, 2, 4, 8]), [0, 1, 5, 21]);
  const scales = [1, 2, 4];
  const fixed = layoutFor(scales, 2, "checkerboard");
  checkInvariants(fixed);
  assert.deepEqual(
    Array.from(fixed.posOf.subarray(fixed.scaleStart[2], fixed.scaleStart[2] + 16)),
    Array.from(buildLayout(scales, 2, (_, side) => checkerboardOrder(side)).posOf.subarray(6, 22)),
  );
  // The random order is a function of the sequence seed: equal seeds agree, others differ.
  const a = layoutFor(scales, 2, "random", 7), b = layoutFor(scales, 2, "random", 7);
  const c = layoutFor(scales, 2, "random", 8);
  checkInvariants(a);
  assert.deepEqual(a.posOf, b.posOf);
  assert.notDeepEqual(a.posOf, c.posOf);
});
