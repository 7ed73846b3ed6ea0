/**
 * The VQ training benchmark (`checkerboard bench vq-train`): optimizer steps of `tokenizer
 * train` on random images at every scale's size (the default: the bundled MNIST tokenizer's
 * architecture at 32 px, scales 1, 2, 4, 8), images per second (median step after a warm-up),
 * and the convolutions' FLOP rate as a fraction of the engine's sgemm on the same GEMM shapes,
 * measured in the same run.
 *
 * FLOPs per image and scale: each convolution's forward 2 Cout Cin k k Ho Wo, and twice that for
 * its backward (the input's and the weight's gradients; conv_in has no input gradient).
 * Attention, norms, the quantiser and the optimizer are not counted. The sgemm reference times
 * the three products of every convolution: y = x w^T (rows, in) x (in, out), dx = dy w (rows,
 * out) x (out, in), dw = dy^T x (out, rows) x (rows, in).
 */
import { linearSeconds } from "../engine.ts";
import { Rng } from "../util/rng.ts";
import { patchOf, type VqArchitecture } from "../tokenizer/vq_architecture.ts";
import { VqTrainer } from "../tokenizer/vq_trainer.ts";
import { VQ_ADAMW } from "../tokenizer/vq_train_loop.ts";
import { median } from "./sample_bench.ts";
import { type ConvGemm, vqConvGemms } from "./vq_bench.ts";

export interface VqTrainBenchResult {
  secondsPerStep: number;
  imagesPerSec: number;
  gflopsPerImage: number;
  modelGflops: number;
  sgemmGflops: number;
  fractionOfSgemm: number;
}

export async function benchVqTrain(
  device: "cpu" | "cuda",
  arch: VqArchitecture,
  opts: { side: number; scales: number[]; batch: number; repeats: number },
): Promise<VqTrainBenchResult> {
  const { batch, repeats } = opts;
  const patch = patchOf(arch);
  const rng = new Rng(3);
  const passes = opts.scales.map((s) => {
    const px = s * patch;
    const images = new Float32Array(batch * 3 * px * px);
    for (let i = 0; i < images.length; i++) images[i] = 2 * rng.next() - 1;
    return { images, B: batch, H: px, W: px, weight: 1 };
  });
  const settings = {
    lr: 1e-4,
    ...VQ_ADAMW,
    weightDecay: 0,
    pixelL2: 1,
    pixelL1: 0,
    codebook: 1,
    commit: 0.25,
    deadAfter: 0,
  };
  const trainer = VqTrainer.create(device, arch, 0, 0);
  let seconds: number;
  try {
    await trainer.step(passes, settings); // warm-up (scratch, tape, threads)
    const times: number[] = [];
    for (let r = 0; r < repeats; r++) {
      const t0 = performance.now();
      await trainer.step(passes, settings);
      times.push((performance.now() - t0) / 1000);
    }
    seconds = median(times);
  } finally {
    trainer.dispose();
  }
  // FLOPs and the sgemm reference over every scale: each convolution's three products, as
  // one product over the batch each (GEMM shapes (rows, in, out): rows x in times in x out).
  let flops = 0, reference = 0;
  const counts = new Map<string, number>();
  for (const s of opts.scales) {
    const { encoder, decoder } = vqConvGemms(arch, s * patch, s * patch);
    [...encoder, ...decoder].forEach((c: ConvGemm, i) => {
      const rows = c.rows * batch;
      const shapes = [[rows, c.in, c.out], [c.out, rows, c.in]]; // forward, dw
      if (i > 0) shapes.push([rows, c.out, c.in]); // dx (conv_in, the first, has none)
      for (const [m, k, n] of shapes) {
        flops += 2 * m * k * n;
        const key = `${m},${k},${n}`;
        counts.set(key, (counts.get(key) ?? 0) + 1);
      }
    });
  }
  for (const [key, count] of counts) {
    const [rows, inF, out] = key.split(",").map(Number);
    const backend = device === "cuda" ? "cuda-fp32" : device;
    const { seconds: t } = await linearSeconds(backend, { rows, in: inF, out }, repeats);
    reference += median(t) * count;
  }
  return {
    secondsPerStep: seconds,
    imagesPerSec: batch / seconds,
    gflopsPerImage: flops / batch / 1e9,
    modelGflops: flops / seconds / 1e9,
    sgemmGflops: flops / reference / 1e9,
    fractionOfSgemm: reference / seconds,
  };
}
