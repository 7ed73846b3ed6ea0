/**
 * The training benchmark (`checkerboard bench train`): training throughput (tokens/s: forward
 * + backward + AdamW step) at a batch with random weights and random codes, after a warm-up
 * step, median of the repeats; and the model's FLOP rate (src/model/config.ts
 * modelFlopsPerToken) as a fraction of the engine's sgemm rate on the model's main matmul
 * shapes, measured in the same run.
 *
 * Shapes (DESIGN.md "Transformer"): tiny uses the MNIST-like data (scales 1,2,4,8, codebook
 * 512, latent 48 = 4x4x3 patches, 10 classes); S and L the paper's (scales 1,2,4,8,16 = ratio 2
 * on a 16x16 grid, codebook 4096, latent 8, 1000 classes). Checkerboard order.
 */
import { linearSeconds } from "../engine.ts";
import { NativeModel, type Precision } from "../model/native_model.ts";
import {
  buildModelConfig,
  type ConfigRequest,
  matmulParamsPerSlot,
  meanVisibleSlots,
  modelFlopsPerToken,
} from "../model/config.ts";
import { buildModelBatch } from "../train/inputs.ts";
import { ADAMW } from "../train/loop.ts";
import { Rng } from "../util/rng.ts";
import { median, randomFloats } from "./sample_bench.ts";

/** The benchmark shapes of each preset (random weights, no checkpoint). */
export const BENCH_SETUPS: Record<string, ConfigRequest> = {
  tiny: { preset: "tiny", vocab: 512, latentDim: 48, classes: 10, scales: [1, 2, 4, 8] },
  S: { preset: "S", vocab: 4096, latentDim: 8, classes: 1000, scales: [1, 2, 4, 8, 16] },
  L: { preset: "L", vocab: 4096, latentDim: 8, classes: 1000, scales: [1, 2, 4, 8, 16] },
};

/**
 * The FLOP rate of the model's own linear (src/engine.ts linearSeconds: sgemm on cpu, the bf16
 * kernel on cuda) on the model's forward matmul shapes, FLOP-weighted over the shapes.
 */
async function gemmRate(
  device: "cpu" | "cuda",
  rows: number,
  width: number,
  hidden: number,
  vocab: number,
  repeats: number,
) {
  // (rows, k) x (k, n): qkv, attention output, MLP up, MLP down, head.
  const shapes: [number, number][] = [
    [width, 3 * width],
    [width, width],
    [width, hidden],
    [hidden, width],
    [width, vocab],
  ];
  let flops = 0, seconds = 0;
  for (const [k, n] of shapes) {
    const { seconds: times } = await linearSeconds(device, { rows, in: k, out: n }, repeats);
    flops += 2 * rows * n * k;
    seconds += median(times);
  }
  return flops / seconds;
}

export async function benchTrain(
  name: string,
  device: "cpu" | "cuda",
  batch: number,
  repeats: number,
  steps: number,
  precision?: Precision,
) {
  const config = buildModelConfig(BENCH_SETUPS[name]);
  const L = config.scales.reduce((a, s) => a + s * s, 0);
  const rng = new Rng(7);
  const codes = new Uint16Array(batch * L).map(() => rng.int(config.vocab));
  const labels = new Int32Array(batch).map(() => rng.int(config.classes + 1));
  const codebook = randomFloats(config.vocab * config.latentDim, rng);
  const { batch: mb } = buildModelBatch(codes, labels, {
    scales: config.scales,
    vocab: config.vocab,
    steps,
    order: "checkerboard",
  });
  const model = NativeModel.create(config, device, 0, precision);
  model.setCodebook(codebook);
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
    const sgemm = await gemmRate(
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
