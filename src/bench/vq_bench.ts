/**
 * The VQ tokenizer benchmark (`checkerboard bench vq`): LlamaGen's full ds16 encoder and
 * decoder (src/tokenizer/vq_net.ts) with random weights at a square image size; images per
 * second of each pass (median of the repeats after a warm-up), and its convolution FLOP rate as
 * a fraction of the engine's sgemm rate (src/engine.ts linearSeconds: sgemm on cpu, the fp32
 * kernel on cuda) on the same GEMM shapes, measured in the same run. As cb_engine_bench vq.
 *
 * FLOPs per image: every convolution's 2 Cout Cin k k Ho Wo; attention, norms and the
 * quantiser are not counted. A convolution is the GEMM (Ho Wo, Cin k k) x (Cin k k, Cout).
 */
import { linearSeconds } from "../engine.ts";
import { type VqArchitecture, VqNet } from "../tokenizer/vq_net.ts";
import { Rng } from "../util/rng.ts";
import { median } from "./sample_bench.ts";

/** One convolution of a pass as a GEMM, per image: y (rows, out) = x (rows, in) w^T. */
export interface ConvGemm {
  rows: number;
  in: number;
  out: number;
}

/**
 * The convolutions the encoder (with quant_conv) and the decoder (with post_quant_conv) of
 * `arch` run on one H x W image, in order (native/engine/vq/vq_model.cc's call sequences).
 */
export function vqConvGemms(
  arch: VqArchitecture,
  H: number,
  W: number,
): { encoder: ConvGemm[]; decoder: ConvGemm[] } {
  const levels = arch.chMult.length, top = arch.ch * arch.chMult[levels - 1];
  const conv = (list: ConvGemm[], side: number, cin: number, cout: number, k: number) =>
    list.push({ rows: side, in: cin * k * k, out: cout });
  const resnet = (list: ConvGemm[], side: number, cin: number, cout: number) => {
    conv(list, side, cin, cout, 3);
    conv(list, side, cout, cout, 3);
    if (cin !== cout) conv(list, side, cin, cout, 1);
  };
  const attention = (list: ConvGemm[], side: number, c: number) => {
    for (let i = 0; i < 4; i++) conv(list, side, c, c, 1); // q, k, v, proj_out
  };
  const mid = (list: ConvGemm[], side: number) => {
    resnet(list, side, top, top);
    attention(list, side, top);
    resnet(list, side, top, top);
  };

  const encoder: ConvGemm[] = [];
  let side = H * W, width = arch.ch;
  conv(encoder, side, 3, arch.ch, 3);
  for (let l = 0; l < levels; l++) {
    const out = arch.ch * arch.chMult[l];
    for (let b = 0; b < arch.encoderBlocks; b++) {
      resnet(encoder, side, width, out);
      width = out;
      if (l === levels - 1) attention(encoder, side, width);
    }
    if (l !== levels - 1) conv(encoder, side /= 4, width, width, 3); // stride 2
  }
  mid(encoder, side);
  conv(encoder, side, top, arch.zChannels, 3);
  conv(encoder, side, arch.zChannels, arch.codeDim, 1); // quant_conv

  const decoder: ConvGemm[] = [];
  conv(decoder, side, arch.codeDim, arch.zChannels, 1); // post_quant_conv
  conv(decoder, side, arch.zChannels, top, 3);
  mid(decoder, side);
  width = top;
  for (let l = 0; l < levels; l++) {
    const out = arch.ch * arch.chMult[levels - 1 - l];
    for (let b = 0; b < arch.decoderBlocks; b++) {
      resnet(decoder, side, width, out);
      width = out;
      if (l === 0) attention(decoder, side, width);
    }
    if (l !== levels - 1) conv(decoder, side *= 4, width, width, 3); // after nearest 2x
  }
  conv(decoder, side, width, 3, 3);
  return { encoder, decoder };
}

export interface VqPassResult {
  pass: "encoder" | "decoder";
  secondsPerPass: number;
  imagesPerSec: number;
  convs: number;
  gflopsPerImage: number;
  modelGflops: number;
  sgemmGflops: number;
  fractionOfSgemm: number;
}

/** The reference linear on every GEMM shape of `convs` (for `batch` images): total seconds. */
async function sgemmSeconds(
  device: "cpu" | "cuda",
  convs: ConvGemm[],
  batch: number,
  repeats: number,
): Promise<number> {
  const counts = new Map<string, number>();
  for (const c of convs) {
    const key = `${c.rows * batch},${c.in},${c.out}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  let total = 0;
  for (const [key, count] of counts) {
    const [rows, inF, out] = key.split(",").map(Number);
    const backend = device === "cuda" ? "cuda-fp32" : device;
    const { seconds } = await linearSeconds(backend, { rows, in: inF, out }, repeats);
    total += median(seconds) * count;
  }
  return total;
}

async function timed(repeats: number, fn: () => Promise<unknown>): Promise<number> {
  await fn(); // warm-up (scratch allocation, OpenBLAS threads)
  const times: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const t0 = performance.now();
    await fn();
    times.push((performance.now() - t0) / 1000);
  }
  return median(times);
}

/** Encoder (with quantisation) and decoder (from codes) of ds16 at `size` px. */
export async function benchVq(
  device: "cpu" | "cuda",
  opts: { size: number; batch: number; codes: number; repeats: number },
): Promise<VqPassResult[]> {
  const { size, batch, repeats } = opts;
  const arch = VqNet.ds16(opts.codes);
  const net = VqNet.random(device, arch, 0);
  try {
    const rng = new Rng(5);
    const images = new Float32Array(batch * 3 * size * size);
    for (let i = 0; i < images.length; i++) images[i] = 2 * rng.next() - 1;
    const grid = size / net.patch;
    let indices: Int32Array = new Int32Array(batch * grid * grid);
    const encodeSeconds = await timed(repeats, async () => {
      indices = (await net.encode(images, batch, size, size)).indices;
    });
    const decodeSeconds = await timed(repeats, () => net.decodeCodes(indices, batch, grid, grid));
    const gemms = vqConvGemms(arch, size, size);
    const results: VqPassResult[] = [];
    for (
      const [pass, seconds] of [["encoder", encodeSeconds], ["decoder", decodeSeconds]] as const
    ) {
      const convs = gemms[pass];
      const flops = convs.reduce((a, c) => a + 2 * c.rows * c.in * c.out, 0);
      const reference = await sgemmSeconds(device, convs, batch, repeats);
      results.push({
        pass,
        secondsPerPass: seconds,
        imagesPerSec: batch / seconds,
        convs: convs.length,
        gflopsPerImage: flops / 1e9,
        modelGflops: (flops * batch) / seconds / 1e9,
        sgemmGflops: (flops * batch) / reference / 1e9,
        fractionOfSgemm: reference / seconds,
      });
    }
    return results;
  } finally {
    net.dispose();
  }
}
