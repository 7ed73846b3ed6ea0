/**
 * The native KV-cached sampler (src/sample/sampler.ts over the addon's sample()):
 * - its logits at every step equal a teacher-forced forward over the sequence it sampled, for
 *   every order and ratio;
 * - a seed gives the same codes at any batch size and thread count, another seed other codes;
 * - top-k 1 is the argmax, w = 0 is plain conditional sampling, one forward per step.
 */
import assert from "node:assert/strict";
import { NativeModel, type NativeSampleRequest } from "../src/model/native_model.ts";
import { buildModelBatch } from "../src/train/inputs.ts";
import { scaleOffsets } from "../src/plan/layout.ts";
import {
  imageOrderSeed,
  sampleCodes,
  sampleRequest,
  samplingLayout,
  type SamplingOptions,
} from "../src/sample/sampler.ts";
import type { SlotLayout } from "../src/plan/layout.ts";
import { ORDER_NAMES, type OrderName } from "../src/plan/orders.ts";
import { RATIO_NAMES, scalesForRatio } from "../src/plan/scales.ts";
import { setThreads } from "../src/engine.ts";
import { Rng } from "../src/util/rng.ts";
import { randomNormals } from "./helpers.ts";

const K = 13, D = 3, CLASSES = 3;

/** A small model with random parameters everywhere (AdaLN gates open), and a codebook. */
function randomModel(scales: number[], device: "cpu" | "cpu-ref" = "cpu", ropeMix = 1) {
  const model = NativeModel.create(
    {
      vocab: K,
      latentDim: D,
      classes: CLASSES,
      depth: 2,
      width: 32,
      heads: 2,
      mlpRatio: 4,
      scales,
      ropeMixLayers: ropeMix,
    },
    device,
    1,
  );
  const rng = new Rng(7);
  model.setState("params", randomNormals(model.paramCount, rng, 0.25));
  const codebook = randomNormals(K * D, rng, 1);
  model.setCodebook(codebook);
  return { model, codebook };
}

const BASE: SamplingOptions = {
  steps: 2,
  order: "checkerboard",
  guidance: 1.5,
  guidanceStart: 1,
  temperature: 1,
  topK: 0,
  topP: 1,
  seed: 11,
  batch: 8,
};

/** The native request of sampleCodes for images [0, labels.length), asking for the logits. */
function requestFor(
  scales: number[],
  labels: Int32Array,
  o: SamplingOptions,
): NativeSampleRequest {
  const layouts = o.order === "random"
    ? Array.from(labels, (_, i) => samplingLayout(scales, o, i))
    : [samplingLayout(scales, o, 0)];
  const imageIndex = Int32Array.from(labels, (_, i) => i);
  return sampleRequest(layouts, labels, imageIndex, { ...o, entropy: true }, true);
}

/** Slot-ordered codes (B*T) of images laid out by `layoutOf(i)` back in raster order (B, L). */
function rasterCodes(
  slotCodes: Int32Array,
  B: number,
  scales: number[],
  layoutOf: (i: number) => SlotLayout,
): Int32Array {
  const T = layoutOf(0).length, L = T - 1;
  const offsets = scaleOffsets(scales);
  const codes = new Int32Array(B * L);
  for (let i = 0; i < B; i++) {
    const layout = layoutOf(i);
    for (let t = 1; t < T; t++) {
      codes[i * L + offsets[layout.scaleOf[t]] + layout.posOf[t]] = slotCodes[i * T + t];
    }
  }
  return codes;
}

for (const ratio of RATIO_NAMES) {
  for (const order of ORDER_NAMES) {
    Deno.test(`KV-cached logits equal teacher-forced logits (ratio ${ratio}, ${order})`, async () => {
      const scales = scalesForRatio(ratio, 6);
      const { model } = randomModel(scales);
      const labels = Int32Array.from([0, 2, 1]);
      const o = { ...BASE, order: order as OrderName, steps: 3 };
      const r = await model.sample(requestFor(scales, labels, o));
      const layout0 = samplingLayout(scales, o, 0);
      const T = layout0.length, B = labels.length;
      assert.equal(r.forwardPasses, layout0.blockCount - 1);

      // The sampled sequence back in raster order, then one teacher-forced forward.
      const codes = rasterCodes(
        r.codes,
        B,
        scales,
        (i) => order === "random" ? samplingLayout(scales, o, i) : layout0,
      );
      const { batch } = buildModelBatch(codes, labels, {
        scales,
        vocab: K,
        steps: o.steps,
        order,
        sequenceSeeds: Array.from(labels, (_, i) => imageOrderSeed(o.seed, i)),
      });
      const forced = (await model.forward(batch, { logits: true })).logits!;
      let worst = 0;
      for (let row = 0; row < B * T; row++) {
        if (row % T === 0) continue; // the class token predicts nothing
        let diff = 0, size = 0;
        for (let c = 0; c < K; c++) {
          diff = Math.max(diff, Math.abs(r.logits![row * K + c] - forced[row * K + c]));
          size = Math.max(size, Math.abs(forced[row * K + c]));
        }
        worst = Math.max(worst, diff / size);
      }
      console.log(`worst relative logit difference ${worst.toExponential(2)}`);
      assert.ok(worst <= 1e-4, `worst relative logit difference ${worst.toExponential(2)}`);
      model.dispose();
    });
  }
}

Deno.test("KV-cached logits also match on cpu-ref, with mixing in every layer", async () => {
  const scales = [1, 2, 4];
  const { model } = randomModel(scales, "cpu-ref", 2);
  const labels = Int32Array.from([1, 0]);
  const o = { ...BASE, steps: [1, 3, 5] };
  const r = await model.sample(requestFor(scales, labels, o));
  const layout = samplingLayout(scales, o, 0);
  const T = layout.length;
  const codes = rasterCodes(r.codes, 2, scales, () => layout);
  const { batch } = buildModelBatch(codes, labels, {
    scales,
    vocab: K,
    steps: o.steps,
    order: "checkerboard",
  });
  const forced = (await model.forward(batch, { logits: true })).logits!;
  for (let row = 0; row < 2 * T; row++) {
    if (row % T === 0) continue;
    for (let c = 0; c < K; c++) {
      const a = r.logits![row * K + c], b = forced[row * K + c];
      assert.ok(Math.abs(a - b) <= 1e-5 * (1 + Math.abs(b)), `row ${row} code ${c}: ${a} vs ${b}`);
    }
  }
  model.dispose();
});

Deno.test("bf16 on the cpu: KV-cached logits follow the bf16 teacher-forced forward", async (t) => {
  // Heads of 32 dims, so the sampler keeps the cache as bf16 and attends over it in bf16
  // (attention_bf16.h, attention_amx.h), and its MLP activations as bf16 (the fused GELU writes
  // them rounded). The teacher-forced forward multiplies the same bf16-rounded matmul inputs
  // but attends in fp32, so what differs is the attention's rounding of q, K, V and the
  // weights. Rounding q and k moves a score by about 2^-9 sqrt(2/3) |q| |k| / sqrt(hd) (RMS),
  // which grows with the scores: with this random model's q and k (elements ~2.5) that is
  // ~1e-2, and the logits follow the weights about one to one. Bound: every row's largest logit
  // difference within 4e-2 of its largest logit (measured: 1.2e-2; 7e-4 with heads of 16 dims,
  // whose cache stays fp32; 3.8e-3 with parameters of a 0.1 scale). A wrong cache layout or a
  // lost chunk of keys gives differences of the logits' own size.
  let made;
  try {
    made = NativeModel.create(
      { vocab: K, latentDim: D, classes: CLASSES, depth: 2, width: 64, heads: 2, mlpRatio: 4,
        scales: SCALES, ropeMixLayers: 1 },
      "cpu",
      1,
      "bf16",
    );
  } catch (err) {
    t.step({ name: `skipped: ${(err as Error).message}`, fn: () => {}, ignore: true });
    return;
  }
  const model = made;
  try {
    const rng = new Rng(9);
    model.setState("params", randomNormals(model.paramCount, rng, 0.25));
    model.setCodebook(randomNormals(K * D, rng, 1));
    const labels = Int32Array.from([2, 0, 1, 1]);
    const o = { ...BASE, steps: 3 };
    const r = await model.sample(requestFor(SCALES, labels, o));
    const layout = samplingLayout(SCALES, o, 0);
    const T = layout.length, B = labels.length;
    const codes = rasterCodes(r.codes, B, SCALES, () => layout);
    const { batch } = buildModelBatch(codes, labels, {
      scales: SCALES,
      vocab: K,
      steps: o.steps,
      order: "checkerboard",
    });
    const forced = (await model.forward(batch, { logits: true })).logits!;
    let worst = 0;
    for (let row = 0; row < B * T; row++) {
      if (row % T === 0) continue;
      let diff = 0, size = 0;
      for (let c = 0; c < K; c++) {
        diff = Math.max(diff, Math.abs(r.logits![row * K + c] - forced[row * K + c]));
        size = Math.max(size, Math.abs(forced[row * K + c]));
      }
      worst = Math.max(worst, diff / size);
    }
    console.log(`bf16: worst relative logit difference ${worst.toExponential(2)}`);
    assert.ok(worst <= 4e-2, `worst relative logit difference ${worst.toExponential(2)}`);
  } finally {
    model.dispose();
  }
});

const SCALES = [1, 2, 4, 8];

Deno.test("a seed gives the same codes at batch 1 and 7 and with 1 or 2 threads", async () => {
  const { model, codebook } = randomModel(SCALES);
  const labels = Int32Array.from({ length: 7 }, (_, i) => i % CLASSES);
  const o = { ...BASE, steps: 4, entropy: true };
  try {
    setThreads(2);
    const seven = await sampleCodes(model, codebook, labels, { ...o, batch: 7 });
    const one = await sampleCodes(model, codebook, labels, { ...o, batch: 1 });
    setThreads(1);
    const single = await sampleCodes(model, codebook, labels, { ...o, batch: 3 });
    assert.deepEqual(one.codes, seven.codes);
    assert.deepEqual(single.codes, seven.codes);
    // Entropies agree to rounding (the matrix products' blocking depends on the batch).
    single.entropy!.forEach((h, i) => assert.ok(Math.abs(h - seven.entropy![i]) < 1e-4));
    // Images of one call differ from each other (their keys differ).
    const L = seven.length;
    assert.notDeepEqual(seven.codes.subarray(0, L), seven.codes.subarray(3 * L, 4 * L));
    const other = await sampleCodes(model, codebook, labels, { ...o, seed: 12, batch: 7 });
    const same = other.codes.filter((c, i) => c === seven.codes[i]).length;
    assert.ok(same < 0.5 * other.codes.length, `${same} of ${other.codes.length} codes unchanged`);
  } finally {
    setThreads(0);
    model.dispose();
  }
});

Deno.test("the random order draws one permutation per image, the same at any batch size", async () => {
  const { model, codebook } = randomModel(SCALES);
  const labels = Int32Array.from([0, 1, 2, 0, 1]);
  const o = { ...BASE, order: "random" as const, steps: 4 };
  const a = await sampleCodes(model, codebook, labels, { ...o, batch: 5 });
  const b = await sampleCodes(model, codebook, labels, { ...o, batch: 2 });
  assert.deepEqual(a.codes, b.codes);
  assert.deepEqual(a.stepOf, b.stepOf);
  const L = a.length;
  assert.notDeepEqual(a.stepOf.subarray(L - 64, L), a.stepOf.subarray(2 * L - 64, 2 * L));
  model.dispose();
});

Deno.test("top-k 1 and temperature 0 give the argmax of the logits", async () => {
  const { model } = randomModel(SCALES);
  const labels = Int32Array.from([0, 1, 2]);
  for (const o of [{ topK: 1 }, { temperature: 0 }]) {
    const opts = { ...BASE, guidance: 0, ...o };
    const r = await model.sample(requestFor(SCALES, labels, opts));
    const T = r.codes.length / labels.length;
    for (let row = 0; row < r.codes.length; row++) {
      if (row % T === 0) continue;
      const logits = r.logits!.subarray(row * K, (row + 1) * K);
      let best = 0;
      for (let c = 1; c < K; c++) if (logits[c] > logits[best]) best = c;
      assert.equal(r.codes[row], best, `slot ${row}`);
      assert.equal(r.entropy![row], 0);
    }
  }
  model.dispose();
});

Deno.test("w = 0 is plain conditional sampling; guidance changes the codes", async () => {
  const { model, codebook } = randomModel(SCALES);
  const labels = Int32Array.from([0, 1, 2, 1]);
  const o = { ...BASE, steps: 4 };
  const plain = await sampleCodes(model, codebook, labels, { ...o, guidance: 0 });
  // Guidance that never starts runs the null-class rows but must not change a code.
  const late = await sampleCodes(model, codebook, labels, {
    ...o,
    guidance: 3,
    guidanceStart: plain.totalSteps,
  });
  const guided = await sampleCodes(model, codebook, labels, {
    ...o,
    guidance: 3,
    guidanceStart: 0,
  });
  assert.deepEqual(late.codes, plain.codes);
  assert.notDeepEqual(guided.codes, plain.codes);
  model.dispose();
});

Deno.test("the number of forward passes is the plan's total steps", async () => {
  const { model, codebook } = randomModel(SCALES);
  const labels = Int32Array.from([2]);
  for (const steps of [1, 2, 4, 16, [1, 2, 3, 5]]) {
    const r = await sampleCodes(model, codebook, labels, { ...BASE, steps });
    const layout = samplingLayout(SCALES, { ...BASE, steps }, 0);
    assert.equal(r.forwardPasses, layout.blockCount - 1, `steps ${steps}`);
    assert.equal(r.totalSteps, layout.blockCount - 1);
  }
  model.dispose();
});

Deno.test("step codes show each location from its step on", async () => {
  const { model, codebook } = randomModel(SCALES);
  const labels = Int32Array.from([0, 2]);
  const r = await sampleCodes(model, codebook, labels, { ...BASE, steps: 3, stepCodes: true });
  const n = 2, L = r.length;
  for (let s = 0; s < r.totalSteps; s++) {
    for (let i = 0; i < n * L; i++) {
      const shown = r.stepCodes![s * n * L + i];
      assert.equal(shown, r.stepOf[i] <= s ? r.codes[i] : -1);
    }
  }
  model.dispose();
});

Deno.test("sampleCodes rejects bad requests with clear errors", async () => {
  const { model, codebook } = randomModel(SCALES);
  await assert.rejects(
    () => sampleCodes(model, codebook, Int32Array.from([3]), BASE),
    /class 3 is outside the model's classes 0\.\.2/,
  );
  await assert.rejects(
    () => sampleCodes(model, codebook, Int32Array.from([0]), { ...BASE, steps: [1, 2] }),
    /steps per scale lists 2 values but the model has 4 scales/,
  );
  await assert.rejects(
    () => sampleCodes(model, codebook, Int32Array.from([0]), { ...BASE, steps: 0 }),
    /steps per scale must be integers >= 1/,
  );
  await assert.rejects(
    () => sampleCodes(model, codebook.subarray(1), Int32Array.from([0]), BASE),
    /the codebook has 38 values but the model needs 13 x 3/,
  );
  model.dispose();
});

Deno.test("the engine refuses bad sampling settings with one clear message each", async () => {
  const scales = [1, 2];
  const { model } = randomModel(scales);
  const labels = Int32Array.from([0, 1]);
  const cases: [Partial<SamplingOptions>, RegExp][] = [
    [{ temperature: NaN }, /^sample: temperature must be a finite number >= 0, got NaN \(native\//],
    [{ temperature: -1 }, /^sample: temperature must be a finite number >= 0, got -1 /],
    [{ temperature: 1e300 }, /^sample: temperature must be a finite number >= 0, got 1e\+300 /],
    [{ topK: 1.5 }, /^sample: topK must be an integer in \[0, 2147483647\], got 1\.5 /],
    [
      { topK: 2 ** 40 },
      /^sample: topK must be an integer in \[0, 2147483647\], got 1099511627776 /,
    ],
    [{ topP: 0 }, /^sample: topP must be in \(0, 1\], got 0 /],
    [{ topP: NaN }, /^sample: topP must be in \(0, 1\], got NaN /],
    [{ guidance: Infinity }, /^sample: guidance must be a finite number, got Infinity /],
    [
      { guidanceStart: -3 },
      /^sample: guidanceStart must be an integer in \[0, 2147483647\], got -3 /,
    ],
    [{ seed: -1 }, /^sample: seed must be an integer in \[0, 2\^53\), got -1 /],
  ];
  for (const [edit, pattern] of cases) {
    const request = requestFor(scales, labels, { ...BASE, ...edit });
    // The request as the CLI's own checks would never let through: straight to the addon.
    Object.assign(request, edit.seed !== undefined ? { seed: edit.seed } : {});
    await assert.rejects(async () => await model.sample(request), (err: Error) => {
      assert.match(err.message, pattern, JSON.stringify(edit));
      assert.doesNotMatch(err.message, /undefined|null|\[object Object\]/);
      return true;
    });
  }
  // A number of the wrong type is named as such, not cast.
  const request = requestFor(scales, labels, BASE) as unknown as Record<string, unknown>;
  await assert.rejects(
    async () => await model.sample({ ...request, topK: "5" } as unknown as NativeSampleRequest),
    /field 'topK' must be a number, got a string/,
  );
  await assert.rejects(
    async () =>
      await model.sample({ ...request, labels: undefined } as unknown as NativeSampleRequest),
    /field 'labels' must be an Int32Array, got no value/,
  );
  // The model still samples afterwards.
  const ok = await model.sample(requestFor(scales, labels, BASE));
  assert.equal(ok.codes.length, 2 * (1 + 1 + 4));
});
