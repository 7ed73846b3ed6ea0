/** Model inputs from codes (src/train/inputs.ts): upsampling, positions, targets, visibility. */
import assert from "node:assert/strict";
import {
  bilinearTaps,
  buildModelBatch,
  FIRST_BLOCK_POSITION,
  upsampleBilinear,
} from "../src/train/inputs.ts";
import { layoutFor, scaleOffsets } from "../src/plan/layout.ts";
import { checkerboardOrder } from "../src/plan/orders.ts";

function close(a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-6) {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    assert.ok(Math.abs(a[i] - b[i]) <= tol, `at ${i}: ${a[i]} vs ${b[i]}`);
  }
}

Deno.test("bilinear upsample of a constant grid is constant", () => {
  const D = 3;
  const src = new Float32Array(3 * 3 * D);
  for (let i = 0; i < 9; i++) src.set([0.25, -1.5, 7], i * D);
  for (const sOut of [3, 4, 5, 7, 16]) {
    const out = upsampleBilinear(src, 3, sOut, D);
    for (let i = 0; i < sOut * sOut; i++) close(out.subarray(i * D, i * D + D), [0.25, -1.5, 7]);
  }
});

Deno.test("1 -> 2 upsample of a single latent gives it everywhere", () => {
  const latent = Float32Array.from([0.5, -2, 3.25, 1e-3]);
  const out = upsampleBilinear(latent, 1, 2, 4);
  for (let i = 0; i < 4; i++) close(out.subarray(i * 4, i * 4 + 4), latent, 0);
});

Deno.test("2 -> 4 upsample matches half-pixel weights by hand", () => {
  // src = (dst + 0.5) / 2 - 0.5 -> -0.25 (clamped to 0), 0.25, 0.75, 1.25 (clamped to 1).
  const taps = bilinearTaps(2, 4);
  assert.deepEqual(Array.from(taps.i0), [0, 0, 0, 1]);
  assert.deepEqual(Array.from(taps.i1), [1, 1, 1, 1]);
  assert.deepEqual(Array.from(taps.w), [0, 0.25, 0.75, 0]);
  const src = Float32Array.from([1, 2, 3, 4]); // [[1, 2], [3, 4]], D = 1
  const out = upsampleBilinear(src, 2, 4, 1);
  const row = (a: number, b: number) => [a, 0.75 * a + 0.25 * b, 0.25 * a + 0.75 * b, b];
  const r0 = row(1, 2), r1 = row(3, 4);
  const mix = (wa: number) => r0.map((v, i) => wa * v + (1 - wa) * r1[i]);
  close(out, [...mix(1), ...mix(0.75), ...mix(0.25), ...mix(0)]);
  // PyTorch F.interpolate([[1,2],[3,4]], size=4, mode="bilinear", align_corners=False):
  close(out.subarray(0, 4), [1, 1.25, 1.75, 2]);
  close(out.subarray(4, 8), [1.5, 1.75, 2.25, 2.5]);
});

/** A tiny codebook whose code c has the latent [c, 10 c + 1]. */
function codebookFor(K: number): Float32Array {
  const cb = new Float32Array(K * 2);
  for (let c = 0; c < K; c++) cb.set([c, 10 * c + 1], c * 2);
  return cb;
}

Deno.test("a batch: class slot, targets at posP, u upsampled, v from the previous block", () => {
  const scales = [1, 2, 4];
  const L = 21, T = 22, D = 2, K = 32;
  const codebook = codebookFor(K);
  const codes = new Uint16Array(2 * L);
  for (let i = 0; i < codes.length; i++) codes[i] = (i * 7 + 3) % K;
  const labels = Int32Array.from([1, 5]);
  const steps = 2;
  const { batch, layouts } = buildModelBatch(codes, labels, {
    scales,
    codebook,
    latentDim: D,
    steps,
    order: "checkerboard",
  });
  const layout = layoutFor(scales, steps, "checkerboard");
  assert.equal(batch.batch, 2);
  assert.equal(batch.slots, T);
  assert.deepEqual(Array.from(batch.labels), [1, 5]);
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
    assert.equal(batch.uLearned[row], 0);
    assert.equal(batch.vLearned[row], 0);
    close(batch.uLatent.subarray(row * D, row * D + D), [0, 0]);
    for (let t = 1; t < T; t++) {
      const s = row + t;
      const k = layout.scaleOf[t];
      const p = layout.posOf[t];
      const side = scales[k];
      assert.equal(batch.posP[s], 2 + offsets[k] + p);
      assert.equal(batch.targets[s], codes[r * L + offsets[k] + p], `target at slot ${t}`);
      // u
      if (k === 0) {
        assert.equal(batch.uLearned[s], 1);
        close(batch.uLatent.subarray(s * D, s * D + D), [0, 0]);
      } else {
        assert.equal(batch.uLearned[s], 0);
        const prevSide = scales[k - 1];
        const prev = new Float32Array(prevSide * prevSide * D);
        for (let i = 0; i < prevSide * prevSide; i++) {
          const c = codes[r * L + offsets[k - 1] + i];
          prev.set(codebook.subarray(c * D, c * D + D), i * D);
        }
        const up = upsampleBilinear(prev, prevSide, side, D);
        close(batch.uLatent.subarray(s * D, s * D + D), up.subarray(p * D, p * D + D));
      }
      // v and posQ
      const first = layout.blockOf[t] === layout.scaleFirstBlock[k];
      if (first) {
        assert.equal(batch.vLearned[s], 1);
        assert.equal(batch.posQ[s], FIRST_BLOCK_POSITION);
        close(batch.vLatent.subarray(s * D, s * D + D), [0, 0]);
      } else {
        assert.equal(batch.vLearned[s], 0);
        // q is the position of token (j mod |b_{i-1}|) of the previous block.
        const b = layout.blockOf[t];
        const j = t - layout.blockStart[b];
        const prevStart = layout.blockStart[b - 1];
        const prevSize = layout.blockEnd[b - 1] - prevStart;
        const q = layout.posOf[prevStart + (j % prevSize)];
        assert.equal(batch.posQ[s], 2 + offsets[k] + q);
        const c = codes[r * L + offsets[k] + q];
        close(batch.vLatent.subarray(s * D, s * D + D), [c, 10 * c + 1]);
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
    codebook: codebookFor(16),
    latentDim: 2,
    steps: 4,
    order: "checkerboard",
  });
  for (let j = 0; j < 4; j++) {
    const [x, y] = order[4 + j];
    const [qx, qy] = order[j];
    assert.equal(batch.targets[1 + 4 + j], y * 4 + x);
    assert.equal(batch.posQ[1 + 4 + j], 2 + qy * 4 + qx);
    assert.equal(batch.vLatent[(1 + 4 + j) * 2], qy * 4 + qx);
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
      codebook: codebookFor(32),
      latentDim: 2,
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
        codebook: codebookFor(8),
        latentDim: 2,
        steps: 1,
        order: "raster",
      }),
    /code 9 .* outside the codebook of 8 codes/,
  );
});
