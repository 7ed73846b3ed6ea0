/**
 * Benchmarks. `deno task bench train [--json] [--device D] [--models tiny,S] [--repeats N]`:
 * training throughput (tokens/s: forward + backward + AdamW step) of the `tiny` and `S` models
 * at batch 8 with random weights and random codes, after a warm-up step, median of the repeats;
 * and the model's FLOP rate (src/model/config.ts modelFlopsPerToken) as a fraction of the
 * engine's sgemm rate on the model's main matmul shapes, measured in the same run.
 *
 * Shapes (DESIGN.md "Transformer"): tiny uses the MNIST-like data (scales 1,2,4,8, codebook
 * 512, latent 48 = 4x4x3 patches, 10 classes); S the paper's (scales 1,2,4,8,16 = ratio 2 on a
 * 16x16 grid, codebook 4096, latent 8, 1000 classes). P = 4 per scale, checkerboard order.
 */
import { parseArgs } from "node:util";
import { gemm, resolveDevice } from "../src/engine.ts";
import { NativeModel } from "../src/model/native_model.ts";
import {
  buildModelConfig,
  type ConfigRequest,
  matmulParamsPerSlot,
  meanVisibleSlots,
  modelFlopsPerToken,
} from "../src/model/config.ts";
import { buildModelBatch } from "../src/train/inputs.ts";
import { ADAMW } from "../src/train/loop.ts";
import { Rng } from "../src/util/rng.ts";

const SETUPS: Record<string, ConfigRequest> = {
  tiny: { preset: "tiny", vocab: 512, latentDim: 48, classes: 10, scales: [1, 2, 4, 8] },
  S: { preset: "S", vocab: 4096, latentDim: 8, classes: 1000, scales: [1, 2, 4, 8, 16] },
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function randomFloats(n: number, rng: Rng): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.next() - 0.5;
  return a;
}

/** sgemm FLOP rate on the model's forward matmul shapes (FLOP-weighted over the shapes). */
function gemmRate(
  device: "cpu" | "cuda",
  rows: number,
  width: number,
  hidden: number,
  vocab: number,
  repeats: number,
) {
  const rng = new Rng(1);
  // (M, k) x (k, n): qkv, attention output, MLP up, MLP down, head.
  const shapes: [number, number][] = [
    [width, 3 * width],
    [width, width],
    [width, hidden],
    [hidden, width],
    [width, vocab],
  ];
  let flops = 0, seconds = 0;
  for (const [k, n] of shapes) {
    const a = randomFloats(rows * k, rng), b = randomFloats(k * n, rng);
    const c = new Float32Array(rows * n);
    gemm(device, { m: rows, n, k, a, b, c }); // warm-up
    const times: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const t0 = performance.now();
      gemm(device, { m: rows, n, k, a, b, c });
      times.push((performance.now() - t0) / 1000);
    }
    flops += 2 * rows * n * k;
    seconds += median(times);
  }
  return flops / seconds;
}

async function benchTrain(
  name: string,
  device: "cpu" | "cuda",
  batch: number,
  repeats: number,
  steps: number,
) {
  const config = buildModelConfig(SETUPS[name]);
  const L = config.scales.reduce((a, s) => a + s * s, 0);
  const rng = new Rng(7);
  const codes = new Uint16Array(batch * L).map(() => rng.int(config.vocab));
  const labels = new Int32Array(batch).map(() => rng.int(config.classes + 1));
  const codebook = randomFloats(config.vocab * config.latentDim, rng);
  const { batch: mb } = buildModelBatch(codes, labels, {
    scales: config.scales,
    codebook,
    latentDim: config.latentDim,
    steps,
    order: "checkerboard",
  });
  const model = NativeModel.create(config, device, 0);
  try {
    const trainStep = async () => {
      const t0 = performance.now();
      model.zeroGrad();
      await model.forward(mb, { backward: true });
      await model.backward();
      await model.step({ ...ADAMW, lr: 1e-4 });
      return (performance.now() - t0) / 1000;
    };
    await trainStep(); // warm-up: arena allocation, first touches
    const times: number[] = [];
    for (let r = 0; r < repeats; r++) times.push(await trainStep());
    const seconds = median(times);
    const T = mb.slots;
    const tokens = batch * (T - 1);
    const flopsPerSlot = modelFlopsPerToken(config, meanVisibleSlots(mb.visibleEnd));
    const modelRate = (flopsPerSlot * batch * T) / seconds;
    const sgemm = gemmRate(
      device,
      batch * T,
      config.width,
      config.mlpRatio * config.width,
      config.vocab,
      repeats,
    );
    return {
      bench: "train",
      model: name,
      device,
      batch,
      stepsPerScale: steps,
      slots: T,
      params: model.paramCount,
      matmulParamsPerSlot: matmulParamsPerSlot(config),
      stepSeconds: seconds,
      tokensPerSec: tokens / seconds,
      modelGflops: modelRate / 1e9,
      sgemmGflops: sgemm / 1e9,
      fractionOfSgemm: modelRate / sgemm,
      repeats,
    };
  } finally {
    model.dispose();
  }
}

async function main(argv: string[]) {
  const [what, ...rest] = argv;
  const { values } = parseArgs({
    args: rest,
    options: {
      json: { type: "boolean" },
      device: { type: "string", default: "auto" },
      models: { type: "string", default: "tiny,S" },
      repeats: { type: "string", default: "3" },
      batch: { type: "string", default: "8" },
      "steps-per-scale": { type: "string", default: "4" },
    },
  });
  if (what !== "train") {
    console.error(
      "usage: deno task bench train [--json] [--device auto|cpu|cuda] [--models tiny,S] " +
        "[--repeats N] [--batch N] [--steps-per-scale P]",
    );
    return 2;
  }
  const device = resolveDevice(values.device as "auto" | "cpu" | "cuda");
  const repeats = Math.max(1, Number(values.repeats));
  const batch = Math.max(1, Number(values.batch));
  const steps = Math.max(1, Number(values["steps-per-scale"]));
  for (const name of values.models!.split(",")) {
    if (!SETUPS[name]) {
      console.error(`bench: unknown model '${name}' (one of: ${Object.keys(SETUPS).join(", ")})`);
      return 2;
    }
    const r = await benchTrain(name, device, batch, repeats, steps);
    if (values.json) {
      console.log(JSON.stringify(r));
    } else {
      console.log(
        `train ${name.padEnd(4)} on ${device}: batch ${batch} x ${r.slots} slots, ` +
          `${(r.params / 1e6).toFixed(1)}M params: ${r.stepSeconds.toFixed(3)} s/step, ` +
          `${r.tokensPerSec.toFixed(0)} tokens/s, ${r.modelGflops.toFixed(1)} GFLOP/s = ` +
          `${(100 * r.fractionOfSgemm).toFixed(0)}% of sgemm (${r.sgemmGflops.toFixed(1)} GFLOP/s)`,
      );
    }
  }
  return 0;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
