/**
 * `checkerboard bench train|sample|vq|vq-train|all`: throughput of training, time per image of
 * sampling, and images/s of the VQ tokenizer, each beside the engine's sgemm rate on the same
 * shapes measured in the same run.
 */
import type { Command, OptionValues } from "../command.ts";
import { floatOption, intListOption, intOption, stringOption } from "../options.ts";
import {
  deviceFrom,
  deviceOption,
  precisionFrom,
  precisionOption,
  ratioOptions,
  scalesFrom,
} from "./common.ts";
import { type LimitSettings, type MachineLimits, peakFor } from "../../src/bench/limits.ts";
import { UsageError } from "../../src/errors.ts";
import { BENCH_SETUPS } from "../../src/bench/train_bench.ts";
import { totalSteps } from "../../src/plan/blocks.ts";
import { allReduceSum, barrier, world } from "../../src/dist/world.ts";

const commonOptions: Command["options"] = {
  device: deviceOption,
  threads: {
    type: "string",
    valueName: "N",
    description: "cpu threads, OpenBLAS's included (default: one per core)",
  },
  repeats: { type: "string", valueName: "N", default: "3", description: "timed repeats" },
  json: { type: "boolean", description: "print the results as one JSON line" },
};

/** The options of the model benchmarks (train, sample): precision and the limits. */
const modelBenchOptions: Command["options"] = {
  precision: precisionOption,
  limits: {
    type: "boolean",
    description: "measure the GEMM peaks and the memory bandwidth first (about 10 s), and " +
      "report every figure as a fraction of them",
  },
};

/** The limits `bench all` measured for its whole run (once, before its figures). */
let runLimits: MachineLimits | undefined;

/** The limits to report against: the run's (bench all), or measured now with --limits, or none. */
async function limitsFor(values: OptionValues): Promise<MachineLimits | undefined> {
  if (runLimits !== undefined) return runLimits;
  if (values.limits !== true) return undefined;
  return await printedLimits(values, {}, false);
}

/** Measures the limits and prints them: the report's lines, or with --json (if `jsonLine`) a line. */
async function printedLimits(
  values: OptionValues,
  settings: LimitSettings,
  jsonLine: boolean,
): Promise<MachineLimits> {
  const { describeLimits, measureLimits } = await import("../../src/bench/limits.ts");
  const measured = await measureLimits(settings);
  if (!values.json) { for (const line of describeLimits(measured)) console.log(line); }
  else if (jsonLine) console.log(JSON.stringify({ bench: "limits", ...measured }));
  return measured;
}

/** " = 61% of the fp32 peak": a rate in GFLOP/s as a fraction of its precision's limit. */
function ofPeak(gflops: number, precision: "fp32" | "bf16", limits?: MachineLimits): string {
  if (limits === undefined) return "";
  const peak = peakFor(limits, precision);
  return `, ${(100 * gflops / peak.gflops).toFixed(0)}% of the ${peak.name} peak ` +
    `(${peak.gflops.toFixed(0)} GFLOP/s)`;
}

async function setup(values: OptionValues) {
  const device = await deviceFrom(values);
  const threads = intOption(values, "threads", { min: 0, max: 1024 });
  if (threads !== undefined) (await import("../../src/engine.ts")).setThreads(threads);
  return { device, repeats: intOption(values, "repeats", { min: 1, max: 1000 }) ?? 3 };
}

function presetName(text: string): string {
  const name = text.trim();
  if (!Object.hasOwn(BENCH_SETUPS, name)) {
    throw new UsageError(
      `--models: unknown preset '${name}' (one of: ${Object.keys(BENCH_SETUPS).join(", ")})`,
    );
  }
  return name;
}

const train: Command = {
  name: "train",
  summary: "training tokens/s and FLOP rate against sgemm, random weights",
  usage: "train [--models tiny,S] [--batch N] [--steps-per-scale P] [options]",
  options: {
    models: {
      type: "string",
      valueName: "LIST",
      default: "tiny,S",
      description: "presets: tiny, S, L",
    },
    batch: { type: "string", valueName: "N", default: "8", description: "images per step" },
    "steps-per-scale": {
      type: "string",
      valueName: "P",
      default: "4",
      description: "P of every scale",
    },
    ...modelBenchOptions,
    ...commonOptions,
  },
  details: [
    "tiny uses MNIST-like shapes (scales 1,2,4,8, codebook 512, latent 48, 10 classes); S and L",
    "the paper's (scales 1,2,4,8,16, codebook 4096, latent 8, 1000 classes).",
  ].join("\n"),
  async run(values) {
    const { device, repeats } = await setup(values);
    const batch = intOption(values, "batch", { min: 1, max: 4096 }) ?? 8;
    const steps = intOption(values, "steps-per-scale", { min: 1, max: 1 << 20 }) ?? 4;
    const precision = precisionFrom(values);
    const { benchTrain } = await import("../../src/bench/train_bench.ts");
    const limits = await limitsFor(values);
    const shown = precision ?? (device === "cuda" ? "bf16" : "fp32");
    const results = [];
    for (const name of (stringOption(values, "models") ?? "tiny,S").split(",").map(presetName)) {
      const r = await benchTrain(name, device, batch, repeats, steps, precision);
      results.push(r);
      if (values.json) continue;
      console.log(
        `train ${name.padEnd(4)} on ${device}: batch ${batch} x ${r.slots} slots, ` +
          `${(r.params / 1e6).toFixed(1)}M params: ${r.stepSeconds.toFixed(3)} s/step, ` +
          `${r.tokensPerSec.toFixed(0)} tokens/s, ${r.modelGflops.toFixed(1)} GFLOP/s = ` +
          `${(100 * r.fractionOfSgemm).toFixed(0)}% of sgemm (${
            r.sgemmGflops.toFixed(1)
          } GFLOP/s)` +
          `${ofPeak(r.modelGflops, shown, limits)} [${shown}]`,
      );
    }
    if (values.json) {
      console.log(JSON.stringify({ bench: "train", device, precision: shown, limits, results }));
    }
  },
};

const sampleOptions: Command["options"] = {
  model: {
    type: "string",
    valueName: "CKPT|tiny|S|L",
    default: "S",
    description: "a checkpoint folder, or a preset with random weights",
  },
  ...ratioOptions,
  final: {
    type: "string",
    valueName: "N",
    default: "16",
    description: "final token grid side (presets)",
  },
  "steps-per-scale": {
    type: "string",
    valueName: "P",
    default: "4",
    description: "P of every scale",
  },
  cfg: {
    type: "string",
    valueName: "W",
    default: "2",
    description: "guidance weight; 0 turns CFG off",
  },
  "cfg-start": {
    type: "string",
    valueName: "N",
    default: "5",
    description: "unguided first steps",
  },
  batches: {
    type: "string",
    valueName: "LIST",
    default: "1,16",
    description: "batch sizes to time",
  },
  ...modelBenchOptions,
  ...commonOptions,
};

async function runSample(values: OptionValues) {
  // Every option is read before the model is made (a usage error costs no model build).
  const steps = intOption(values, "steps-per-scale", { min: 1, max: 1 << 20 }) ?? 4;
  const guidance = floatOption(values, "cfg", { min: 0 }) ?? 2;
  const guidanceStart = intOption(values, "cfg-start", { min: 0, max: 1 << 20 }) ?? 5;
  const batches = intListOption(values, "batches", { min: 1, max: 4096 }) ?? [1, 16];
  const final = intOption(values, "final", { min: 1, max: 4096 }) ?? 16;
  const precision = precisionFrom(values);
  const { device, repeats } = await setup(values);
  const shown = precision ?? (device === "cuda" ? "bf16" : "fp32");
  const limits = await limitsFor(values);
  const { NativeModel } = await import("../../src/model/native_model.ts");
  const { buildModelConfig } = await import("../../src/model/config.ts");
  const { benchSamplePoint, randomFloats } = await import("../../src/bench/sample_bench.ts");
  const { Rng } = await import("../../src/util/rng.ts");
  const name = stringOption(values, "model") ?? "S";
  let model,
    codebook: Float32Array,
    order: "checkerboard" | "raster" | "random" | "quadrant" = "checkerboard";
  if (Object.hasOwn(BENCH_SETUPS, name)) {
    const preset = BENCH_SETUPS[name];
    const { scales } =
      name === "tiny" && values.ratio === "2" && values.scales === undefined && final === 16
        ? { scales: [...preset.scales] } // tiny's MNIST shapes unless asked otherwise
        : scalesFrom(values, final);
    const config = buildModelConfig({ ...preset, scales });
    model = NativeModel.create(config, device, 0, precision);
    codebook = randomFloats(config.vocab * config.latentDim, new Rng(3));
  } else {
    const { loadSamplingModel } = await import("../../src/model/load.ts");
    const loaded = await loadSamplingModel(name, undefined, device, precision);
    model = loaded.model;
    codebook = loaded.tokenizer.codebook;
    order = loaded.info.order;
  }
  const options = {
    steps,
    order,
    guidance,
    guidanceStart,
    temperature: 1,
    topK: 0,
    topP: 1,
    seed: 0,
  };
  const points = [];
  try {
    const c = model.config;
    const stepsTotal = totalSteps(c.scales, steps);
    const w = world();
    for (const batch of batches) {
      barrier(); // several ranks: every rank's point runs at the same time
      const r = await benchSamplePoint(model, codebook, options, batch, repeats);
      if (w.size > 1) {
        // The job's rate: every rank samples its own batches at once.
        const together = allReduceSum(Float64Array.of(r.imagesPerSec))[0];
        if (w.isRoot && !values.json) {
          console.log(
            `sample ${name} over ${w.size} ranks, batch ${batch} each: ` +
              `${together.toFixed(2)} images/s together, ${(1000 / together).toFixed(1)} ms ` +
              `per image of the job (rank 0 alone: ${r.imagesPerSec.toFixed(2)} images/s)`,
          );
        }
        points.push({ ...r, ranks: w.size, imagesPerSecTogether: together });
        continue;
      }
      // Every step reads every weight once (bf16 copies under bf16), for the whole batch.
      const weightBytes = model.paramCount * (shown === "bf16" ? 2 : 4) * stepsTotal / batch;
      const readGBps = weightBytes / r.secondsPerImage / 1e9;
      points.push({ ...r, weightReadGBps: readGBps });
      if (values.json) continue;
      const bandwidth = limits === undefined
        ? ""
        : `; weights read at ${readGBps.toFixed(1)} GB/s = ${
          (100 * readGBps / limits.readGBps).toFixed(0)
        }% of the memory bandwidth (${limits.readGBps.toFixed(1)} GB/s)`;
      const ms = (s: number) => `${(1000 * s).toFixed(1)} ms`;
      console.log(
        `sample ${name} on ${device}: scales ${c.scales.join(",")}, ${stepsTotal} steps, ` +
          `cfg ${options.guidance}, batch ${batch}: ${ms(r.secondsPerImage)}/image ` +
          `(min ${ms(r.minSecondsPerImage)}, max ${ms(r.maxSecondsPerImage)}), ` +
          `${r.imagesPerSec.toFixed(2)} images/s, ${r.slotsPerSec.toFixed(0)} slots/s, ` +
          `${r.modelGflops.toFixed(1)} GFLOP/s = ${(100 * r.fractionOfSgemm).toFixed(0)}% of ` +
          `sgemm on the same shapes (${r.sgemmGflops.toFixed(1)} GFLOP/s)` +
          `${ofPeak(r.modelGflops, shown, limits)}${bandwidth} [${shown}]`,
      );
    }
    if (values.json && w.isRoot) {
      console.log(JSON.stringify({
        bench: "sample",
        model: name,
        device,
        precision: shown,
        limits,
        params: model.paramCount,
        scales: c.scales,
        stepsPerScale: steps,
        totalSteps: stepsTotal,
        cfg: options.guidance,
        cfgStart: options.guidanceStart,
        repeats,
        points,
      }));
    }
  } finally {
    model.dispose();
  }
}

const sample: Command = {
  name: "sample",
  summary: "sampling time per image at several batch sizes, FLOP rate against sgemm",
  usage: "sample [--model CKPT|tiny|S|L] [--batches 1,16] [options]",
  options: sampleOptions,
  details: [
    "Presets run with random weights: S and L with codebook 4096, latent 8, 1000 classes on the",
    "--ratio scales up to --final (default: ratio 2, 16x16, i.e. scales 1,2,4,8,16: 17 steps",
    "at P = 4); tiny with MNIST shapes (scales 1,2,4,8, codebook 512). Each batch size gets one",
    "warm-up call, then --repeats timed calls: the median, the fastest and the slowest.",
  ].join("\n"),
  run: runSample,
};

const vq: Command = {
  name: "vq",
  summary: "the VQ-16 tokenizer (LlamaGen ds16, random weights): images/s, FLOP rate against sgemm",
  usage: "vq [--size 256] [--batch 1] [--codes 16384] [options]",
  options: {
    size: { type: "string", valueName: "PX", default: "256", description: "image side (x16)" },
    batch: { type: "string", valueName: "N", default: "1", description: "images per pass" },
    codes: { type: "string", valueName: "K", default: "16384", description: "codebook size" },
    ...commonOptions,
  },
  details: [
    "The full ds16 architecture (ch 128, ch_mult 1,1,2,2,4, z 256, codes of 8) with random",
    "weights: the encoder with quantisation and the decoder from codes, each after a warm-up,",
    "median of --repeats. The FLOP rate counts the convolutions (2 Cout Cin k k Ho Wo) and is",
    "compared with the engine's sgemm on each convolution's GEMM shape in the same run.",
  ].join("\n"),
  async run(values) {
    const size = intOption(values, "size", { min: 16, max: 4096 }) ?? 256;
    if (size % 16 !== 0) throw new UsageError(`--size must be a multiple of 16, got ${size}`);
    const batch = intOption(values, "batch", { min: 1, max: 1024 }) ?? 1;
    const codes = intOption(values, "codes", { min: 2, max: 65536 }) ?? 16384;
    const { device, repeats } = await setup(values);
    const { benchVq } = await import("../../src/bench/vq_bench.ts");
    const results = await benchVq(device, { size, batch, codes, repeats });
    if (values.json) {
      console.log(
        JSON.stringify({
          bench: "vq",
          model: "ds16",
          device,
          size,
          batch,
          codes,
          repeats,
          results,
        }),
      );
      return;
    }
    for (const r of results) {
      console.log(
        `vq ${r.pass} ds16 on ${device}: ${size} x ${size} px, batch ${batch}: ` +
          `${r.secondsPerPass.toFixed(2)} s/pass, ${r.imagesPerSec.toFixed(3)} images/s, ` +
          `${r.gflopsPerImage.toFixed(1)} GFLOP/image in ${r.convs} convs, ` +
          `${r.modelGflops.toFixed(1)} GFLOP/s = ${(100 * r.fractionOfSgemm).toFixed(0)}% of ` +
          `sgemm on the same shapes (${r.sgemmGflops.toFixed(1)} GFLOP/s)`,
      );
    }
  },
};

const vqTrain: Command = {
  name: "vq-train",
  summary: "training the VQ autoencoder (tokenizer train): images/s, FLOP rate against sgemm",
  usage: "vq-train [--ch 32] [--ch-mult 1,2,2] [--side 32] [--scales 1,2,4,8] [--batch 32]",
  options: {
    ch: { type: "string", valueName: "N", default: "32", description: "base channels" },
    "ch-mult": {
      type: "string",
      valueName: "LIST",
      default: "1,2,2",
      description: "channel multiples per level",
    },
    "z-channels": { type: "string", valueName: "N", default: "32", description: "z channels" },
    codes: { type: "string", valueName: "K", default: "512", description: "codebook size" },
    "code-dim": { type: "string", valueName: "D", default: "8", description: "code dimension" },
    "encoder-blocks": { type: "string", valueName: "N", default: "1", description: "per level" },
    "decoder-blocks": { type: "string", valueName: "N", default: "2", description: "per level" },
    side: { type: "string", valueName: "PX", default: "32", description: "image side" },
    scales: {
      type: "string",
      valueName: "LIST",
      default: "1,2,4,8",
      description: "token grid sides of a step (each at side * 2^(levels-1) px)",
    },
    batch: { type: "string", valueName: "N", default: "32", description: "images per step" },
    ...commonOptions,
  },
  details: [
    "The default is the bundled MNIST tokenizer's architecture and recipe (scripts/",
    "train-bundled-model.sh). A step trains the batch at every scale's size; the FLOP rate counts",
    "the convolutions' three products (forward, input and weight gradients) and is compared with",
    "the engine's sgemm on each product's shape in the same run.",
  ].join("\n"),
  async run(values) {
    const arch = {
      ch: intOption(values, "ch", { min: 1, max: 4096 })!,
      chMult: intListOption(values, "ch-mult", { min: 1, max: 64 })!,
      zChannels: intOption(values, "z-channels", { min: 1, max: 4096 })!,
      codes: intOption(values, "codes", { min: 2, max: 65536 })!,
      codeDim: intOption(values, "code-dim", { min: 1, max: 1024 })!,
      encoderBlocks: intOption(values, "encoder-blocks", { min: 1, max: 16 })!,
      decoderBlocks: intOption(values, "decoder-blocks", { min: 1, max: 16 })!,
    };
    const side = intOption(values, "side", { min: 1, max: 1024 })!;
    const scales = intListOption(values, "scales", { min: 1 })!;
    const batch = intOption(values, "batch", { min: 1, max: 4096 })!;
    const patch = 2 ** (arch.chMult.length - 1);
    if (scales[scales.length - 1] * patch !== side) {
      throw new UsageError(
        `--scales must end at side / ${patch} = ${side / patch} (the final token grid), got ` +
          scales.join(","),
      );
    }
    const { device, repeats } = await setup(values);
    const { benchVqTrain } = await import("../../src/bench/vq_train_bench.ts");
    const r = await benchVqTrain(device, arch, { side, scales, batch, repeats });
    if (values.json) {
      console.log(JSON.stringify({ bench: "vq-train", device, arch, side, scales, batch, ...r }));
      return;
    }
    console.log(
      `vq-train ch ${arch.ch} x [${arch.chMult}] on ${device}: ${side} px, scales ` +
        `${scales.join(",")}, batch ${batch}: ${r.secondsPerStep.toFixed(3)} s/step, ` +
        `${r.imagesPerSec.toFixed(1)} images/s, ${r.gflopsPerImage.toFixed(2)} GFLOP/image, ` +
        `${r.modelGflops.toFixed(1)} GFLOP/s = ${(100 * r.fractionOfSgemm).toFixed(0)}% of sgemm ` +
        `on the same shapes (${r.sgemmGflops.toFixed(1)} GFLOP/s)`,
    );
  },
};

const all: Command = {
  name: "all",
  summary: "the standard set: the limits, then train tiny and S and sample S at batches 1 and " +
    "16, in fp32 and (where the machine has it) bf16 (deno task bench)",
  usage: "all [--device D] [--threads N] [--repeats N] [--json]",
  options: commonOptions,
  async run(values) {
    const { device } = await setup(values);
    const precisions: ("fp32" | "bf16")[] = ["fp32", "bf16"];
    if (device === "cpu") {
      runLimits = await printedLimits(values, {}, true);
      if (runLimits.bf16 === null) precisions.pop();
    }
    for (const precision of precisions) {
      const common = { ...values, precision };
      await train.run!({ ...common, models: "tiny,S", batch: "8", "steps-per-scale": "4" }, []);
      await runSample({
        ...common,
        model: "S",
        ratio: "2",
        final: "16",
        "steps-per-scale": "4",
        cfg: "2",
        "cfg-start": "5",
        batches: "1,16",
      });
    }
  },
};

const limits: Command = {
  name: "limits",
  summary: "the machine's limits: fp32 and bf16 GEMM peaks at 4096^3, memory read bandwidth",
  usage: "limits [--size N] [--seconds S] [--threads N] [--json]",
  options: {
    size: { type: "string", valueName: "N", default: "4096", description: "GEMM side" },
    seconds: {
      type: "string",
      valueName: "S",
      default: "2",
      description: "time box of each measurement",
    },
    threads: commonOptions.threads,
    json: commonOptions.json,
  },
  details: [
    "Every fp32 GEMM path the engine has (oneDNN matmul and sgemm, OpenBLAS, the blocked loop)",
    "at size^3, its bf16 matmul where the CPU has AVX512-BF16, and the memory read bandwidth",
    "over a 1 GiB buffer: the limits that `bench train|sample --limits` and `bench all` report",
    "their figures against.",
  ].join("\n"),
  async run(values) {
    const size = intOption(values, "size", { min: 16, max: 16384 }) ?? 4096;
    const seconds = floatOption(values, "seconds", { min: 0.01, max: 60 }) ?? 2;
    const threads = intOption(values, "threads", { min: 0, max: 1024 });
    if (threads !== undefined) (await import("../../src/engine.ts")).setThreads(threads);
    await printedLimits(values, { size, seconds }, true);
  },
};

export const command: Command = {
  name: "bench",
  summary: "benchmark training throughput and sampling time per image",
  usage: "bench COMMAND [options]",
  options: {},
  subcommands: [train, sample, all, vq, vqTrain, limits],
};
