/**
 * Blockwise causality through the whole pipeline (codes -> inputs -> model): changing the codes
 * of any block changes no logits of that block or earlier ones (its codes reach the model only
 * as inputs of later slots) and changes some logits of later blocks.
 */
import assert from "node:assert/strict";
import { buildModelBatch } from "../src/train/inputs.ts";
import { layoutFor, scaleOffsets } from "../src/plan/layout.ts";
import { NativeModel } from "../src/model/native_model.ts";
import { Rng } from "../src/util/rng.ts";
import { randomNormals } from "./helpers.ts";

const scales = [1, 2, 4];
const K = 11, D = 3;

for (const device of ["cpu", "cpu-ref"] as const) {
  Deno.test(`changing a block's codes only changes later blocks' logits (${device})`, async () => {
    const model = NativeModel.create(
      {
        vocab: K,
        latentDim: D,
        classes: 3,
        depth: 2,
        width: 32,
        heads: 2,
        mlpRatio: 4,
        scales,
        ropeMixLayers: 1,
      },
      device,
      1,
    );
    // Random parameters everywhere, so the AdaLN gates (zero at init) open every path.
    const rng = new Rng(5);
    model.setState("params", randomNormals(model.paramCount, rng, 0.2));
    model.setCodebook(randomNormals(K * D, rng, 1));
    const L = scales.reduce((a, s) => a + s * s, 0);
    const codes = Int32Array.from({ length: 2 * L }, () => rng.int(K));
    const labels = Int32Array.from([1, 3]);
    const opts = { scales, vocab: K, steps: 2, order: "checkerboard" as const };
    const layout = layoutFor(scales, 2, "checkerboard");
    const offsets = scaleOffsets(scales);
    const logitsOf = async (c: Int32Array) =>
      (await model.forward(buildModelBatch(c, labels, opts).batch, { logits: true })).logits!;
    const base = await logitsOf(codes);
    const T = layout.length;
    const lastBlock = Math.max(...layout.blockOf);
    for (let block = 1; block <= lastBlock; block++) {
      const changed = Int32Array.from(codes);
      for (let t = 1; t < T; t++) {
        if (layout.blockOf[t] !== block) continue;
        for (let row = 0; row < 2; row++) {
          const i = row * L + offsets[layout.scaleOf[t]] + layout.posOf[t];
          changed[i] = (changed[i] + 1 + rng.int(K - 1)) % K;
        }
      }
      const logits = await logitsOf(changed);
      let laterChanged = false;
      for (let row = 0; row < 2; row++) {
        for (let t = 0; t < T; t++) {
          for (let k = 0; k < K; k++) {
            const i = (row * T + t) * K + k;
            if (layout.blockOf[t] <= block) {
              assert.equal(
                logits[i],
                base[i],
                `block ${block} changed slot ${t} (block ${layout.blockOf[t]})`,
              );
            } else if (logits[i] !== base[i]) {
              laterChanged = true;
            }
          }
        }
      }
      if (block < lastBlock) assert.ok(laterChanged, `block ${block} changed no later logit`);
    }
    model.dispose();
  });
}
