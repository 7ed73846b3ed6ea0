/**
 * Model inputs from codes (src/train/inputs.ts): codes, positions, targets, visibility. The
 * latents the engine builds from them (u upsampled, v the fed code's) are checked by the
 * native tests (native/tests/test_model_inputs.cc).
 */
import assert from "node:assert/strict";
import { buildModelBatch, FIRST_BLOCK_POSITION } from "../src/train/inputs.ts";
import { layoutFor, scaleOffsets } from "../src/plan/layout.ts";
import { checkerboardOrder } from "../src/plan/orders.ts";

Deno.test("a batch: class slot, targets at posP, codes, v fed from the previous block", () => {
  const scales = [1, 2, 4];
  const L = 21, T = 22, K = 32;
  const codes = new Uint16Array(2 * L);
  for (let i = 0; i < codes.length; i++) codes[i] = (i * 7 + 3) % K;
  const labels = Int32Array.from([1, 5]);
  const steps = 2;
  const { batch, layouts } = buildModelBatch(codes, labels, {
    scales,
    vocab: K,
    steps,
    order: "checkerboard",
  });
  const layout = layoutFor(scales, steps, "checkerboard");
  assert.equal(batch.batch, 2);
  assert.equal(batch.slots, T);
  assert.deepEqual(Array.from(batch.labels), [1, 5]);
  assert.deepEqual(Array.from(batch.codes), Array.from(codes));
  assert.deepEqual(Array.from(batch.visibleEnd), Array.from(layout.visibleEnd));
  assert.deepEqual(Array.from(layouts[1].posOf), Array.from(layout.posOf));
  const offsets = scaleOffsets(scales);
  assert.deepEqual(offsets, [0, 1, 5]);

  for (let r = 0; r < 2; r++) {
    const row = r * T;
    // Class slot.
    assert.equal(batch.posP[row], 0);
    assert.equal(batch.posQ[row], 0);
    assert.equal(batch.targets[row], -1);
    for (let t = 1; t < T; t++) {
      const s = row + t;
      const k = layout.scaleOf[t];
      const p = layout.posOf[t];
      assert.equal(batch.posP[s], 2 + offsets[k] + p);
      assert.equal(batch.targets[s], codes[r * L + offsets[k] + p], `target at slot ${t}`);
      // v and posQ
      const first = layout.blockOf[t] === layout.scaleFirstBlock[k];
      if (first) {
        assert.equal(batch.posQ[s], FIRST_BLOCK_POSITION);
      } else {
        // q is the position of token (j mod |b_{i-1}|) of the previous block.
        const b = layout.blockOf[t];
        const j = t - layout.blockStart[b];
        const prevStart = layout.blockStart[b - 1];
        const prevSize = layout.blockEnd[b - 1] - prevStart;
        const q = layout.posOf[prevStart + (j % prevSize)];
        assert.equal(batch.posQ[s], 2 + offsets[k] + q);
      }
    }
  }
});

Deno.test("checkerboard P=4 on 4x4: the second block is fed the first block's tokens", () => {
  const scales = [4];
  const order = checkerboardOrder(4);
  const codes = new Uint16Array(16).map((_, i) => i); // code = raster index
  const { batch } = buildModelBatch(codes, Int32Array.from([0]), {
    scales,
    vocab: 16,
    steps: 4,
    order: "checkerboard",
  });
  for (let j = 0; j < 4; j++) {
    const [x, y] = order[4 + j];
    const [qx, qy] = order[j];
    assert.equal(batch.targets[1 + 4 + j], y * 4 + x);
    assert.equal(batch.posQ[1 + 4 + j], 2 + qy * 4 + qx);
    assert.equal(batch.codes[batch.posQ[1 + 4 + j] - 2], qy * 4 + qx); // the fed code
  }
});

Deno.test("random order: one order per row, shared visibility, same multiset of targets", () => {
  const scales = [1, 2, 4];
  const L = 21, T = 22;
  const codes = new Uint16Array(3 * L);
  for (let r = 0; r < 3; r++) for (let i = 0; i < L; i++) codes[r * L + i] = i; // same rows
  const build = (seeds: number[]) =>
    buildModelBatch(codes, Int32Array.from([0, 0, 0]), {
      scales,
      vocab: 32,
      steps: [1, 2, 3],
      order: "random",
      sequenceSeeds: seeds,
    });
  const { batch, layouts } = build([11, 12, 11]);
  const row = (r: number) => Array.from(batch.posP.subarray(r * T, (r + 1) * T));
  assert.notDeepEqual(row(0), row(1));
  assert.deepEqual(row(0), row(2)); // same seed, same order
  assert.deepEqual(row(0).slice().sort((a, b) => a - b), row(1).slice().sort((a, b) => a - b));
  assert.deepEqual(Array.from(layouts[0].visibleEnd), Array.from(layouts[1].visibleEnd));
  assert.deepEqual(Array.from(batch.visibleEnd), Array.from(layouts[1].visibleEnd));
  // targets follow posP: code i sits at raster index i.
  for (let r = 0; r < 3; r++) {
    for (let t = 1; t < T; t++) assert.equal(batch.targets[r * T + t], batch.posP[r * T + t] - 2);
  }
  // Deterministic in the seeds.
  assert.deepEqual(Array.from(build([11, 12, 11]).batch.posQ), Array.from(batch.posQ));
  assert.throws(() => build([1]), /one sequence seed per row/);
});

Deno.test("a code outside the codebook is a clear error", () => {
  const codes = Uint16Array.from([0, 1, 2, 9, 3]);
  assert.throws(
    () =>
      buildModelBatch(codes, Int32Array.from([0]), {
        scales: [1, 2],
        vocab: 8,
        steps: 1,
        order: "raster",
      }),
    /code 9 .* outside the codebook of 8 codes/,
  );
});
