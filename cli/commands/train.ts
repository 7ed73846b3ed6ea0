/** `checkerboard train`: train a class-conditional progressive-checkerboard transformer. */
import { join } from "node:path";
import type { Command, OptionValues } from "../command.ts";
import {
  choiceOption,
  floatOption,
  intListOption,
  intOption,
  requiredString,
  stringOption,
} from "../options.ts";
import type { Precision } from "../../src/model/native_model.ts";
import { deviceFrom, deviceOption, precisionFrom, precisionOption, scalesFrom } from "./common.ts";
import { UsageError, UserError } from "../../src/errors.ts";
import { type Manifest, readManifest } from "../../src/data/shards.ts";
import { tokenizerForManifest } from "../../src/data/manifest_tokenizer.ts";
import { ORDER_NAMES } from "../../src/plan/orders.ts";
import {
  buildModelConfig,
  describeConfig,
  parsePreset,
  parseRopeMix,
  PRESET_NAMES,
  type PresetName,
} from "../../src/model/config.ts";
import {
  checkAgainstManifest,
  type CheckpointInfo,
  modelFileStep,
} from "../../src/model/checkpoint.ts";
import { parseLrDrops } from "../../src/train/schedule.ts";
import { TRAIN_DEFAULTS as DEFAULTS } from "../../src/train/defaults.ts";
import { resumeRun } from "../../src/train/resume.ts";
import { checkTrainingData } from "../../src/train/preflight.ts";
import { osErrorAsUserError } from "../../src/util/files.ts";
import { checkRunFolder, prepareRunFolder } from "../../src/train/run_folder.ts";
import {
  ADAMW,
  batchesPerEpoch,
  METRICS_FILE,
  rankRows,
  splitImages,
  stepsForEpochs,
  train,
  type TrainOptions,
} from "../../src/train/loop.ts";
import type { NativeModel } from "../../src/model/native_model.ts";
import { barrier, collectiveCounters, world } from "../../src/dist/world.ts";

/**
 * Training options from the command line, each with its default (TRAIN_DEFAULTS). The options
 * that shape training have no parser default, so that on --resume an explicit value can be
 * told apart from the default and compared with the checkpoint's.
 */
function trainOptionsFrom(values: OptionValues): Omit<TrainOptions, "totalSteps"> {
  const lrDrops = stringOption(values, "lr-drops");
  return {
    order: choiceOption(values, "order", ORDER_NAMES) ?? DEFAULTS.order,
    stepsChoices: intListOption(values, "steps-per-scale-train", { min: 1 }) ??
      [...DEFAULTS.stepsPerScaleTrain],
    batch: intOption(values, "batch", { min: 1 }) ?? DEFAULTS.batch,
    accum: intOption(values, "accum", { min: 1 }) ?? DEFAULTS.accum,
    lr: floatOption(values, "lr", { min: 0 }) ?? DEFAULTS.lr,
    warmup: intOption(values, "warmup", { min: 0 }) ?? DEFAULTS.warmup,
    lrDrops: lrDrops === undefined ? [...DEFAULTS.lrDrops] : parseLrDrops(lrDrops),
    classDropout: floatOption(values, "class-dropout", { min: 0, max: 1 }) ??
      DEFAULTS.classDropout,
    seed: intOption(values, "seed", { min: 0 }) ?? DEFAULTS.seed,
  };
}

/** Options that must not change on --resume, with the name of their TrainOptions field. */
const FIXED_ON_RESUME: [string, Exclude<keyof TrainOptions, "totalSteps">][] = [
  ["order", "order"],
  ["steps-per-scale-train", "stepsChoices"],
  ["batch", "batch"],
  ["accum", "accum"],
  ["lr", "lr"],
  ["warmup", "warmup"],
  ["lr-drops", "lrDrops"],
  ["class-dropout", "classDropout"],
  ["seed", "seed"],
];

function totalStepsFrom(
  values: OptionValues,
  manifest: Manifest,
  o: { batch: number; accum: number },
): number | undefined {
  const iters = intOption(values, "iters", { min: 1 });
  const epochs = floatOption(values, "epochs", { min: 0 });
  if (iters !== undefined && epochs !== undefined) {
    throw new UsageError("give --epochs or --iters, not both");
  }
  if (iters !== undefined) return iters;
  if (epochs !== undefined) {
    if (!(epochs > 0)) throw new UsageError("--epochs must be greater than 0");
    return stepsForEpochs(manifest, o.batch, o.accum, epochs);
  }
  return undefined;
}

/** Model-shape options given with --resume must agree with the checkpoint. */
function checkShapeOnResume(values: OptionValues, info: CheckpointInfo) {
  const c = info.config;
  const given: [string, unknown, unknown][] = [
    ["model", stringOption(values, "model"), info.training.model],
    ["depth", intOption(values, "depth", { min: 1 }), c.depth],
    ["width", intOption(values, "width", { min: 1 }), c.width],
    ["heads", intOption(values, "heads", { min: 1 }), c.heads],
  ];
  const ropeMix = stringOption(values, "rope-mix");
  if (ropeMix !== undefined) {
    given.push(["rope-mix", parseRopeMix(ropeMix, c.depth), c.ropeMixLayers]);
  }
  for (const [name, value, stored] of given) {
    if (value !== undefined && value !== stored) {
      throw new UsageError(
        `--${name} ${value} differs from the checkpoint's (${stored}); the checkpoint fixes ` +
          `the model, drop --${name} to resume`,
      );
    }
  }
}

export const command: Command = {
  name: "train",
  summary: "train a class-conditional progressive-checkerboard transformer on token shards",
  usage: "train --data DIR --out DIR [--model tiny|S|L] [options]",
  options: {
    data: {
      type: "string",
      valueName: "DIR",
      description: "token shard folder from 'checkerboard data' (required)",
    },
    out: {
      type: "string",
      valueName: "DIR",
      description:
        "checkpoint folder: model.safetensors, train-state.safetensors, metrics.jsonl (required)",
    },
    tokenizer: {
      type: "string",
      valueName: "DIR",
      description: "tokenizer folder (default: the one the data's manifest names)",
    },
    model: {
      type: "string",
      valueName: PRESET_NAMES.join("|"),
      description: `model preset: tiny 4x256, S 12x512, L 20x1024 (default: ${DEFAULTS.model})`,
    },
    depth: { type: "string", valueName: "N", description: "layers (overrides the preset)" },
    width: { type: "string", valueName: "N", description: "model width (overrides the preset)" },
    heads: {
      type: "string",
      valueName: "N",
      description: "attention heads; width/heads must be even (overrides the preset)",
    },
    "rope-mix": {
      type: "string",
      valueName: "none|all|N",
      description:
        `key RoPE mixing in no, all or the first N layers (default: ${DEFAULTS.ropeMix})`,
    },
    ratio: {
      type: "string",
      valueName: "R",
      description: "scale ratio; the scales come from the data, this only checks them",
    },
    scales: {
      type: "string",
      valueName: "LIST",
      description: "scale sides; must match the data's (a check, like --ratio)",
    },
    order: {
      type: "string",
      valueName: "NAME",
      description: `within-scale order: ${ORDER_NAMES.join(", ")} (default: ${DEFAULTS.order})`,
    },
    "steps-per-scale-train": {
      type: "string",
      valueName: "LIST",
      description: `P is drawn per batch from this list (default: ${
        DEFAULTS.stepsPerScaleTrain.join(",")
      })`,
    },
    batch: {
      type: "string",
      valueName: "N",
      description: `images per micro-batch (default: ${DEFAULTS.batch})`,
    },
    accum: {
      type: "string",
      valueName: "N",
      description: `micro-batches per optimizer step (default: ${DEFAULTS.accum})`,
    },
    lr: {
      type: "string",
      valueName: "LR",
      description: `peak learning rate (default: ${DEFAULTS.lr})`,
    },
    warmup: {
      type: "string",
      valueName: "N",
      description: `linear warmup steps (default: ${DEFAULTS.warmup})`,
    },
    "lr-drops": {
      type: "string",
      valueName: "LIST",
      description: `fractions of the run where lr steps down, ending at lr/10, or none ` +
        `(default: ${DEFAULTS.lrDrops.join(",")})`,
    },
    epochs: {
      type: "string",
      valueName: "E",
      description: `passes over the training split (default: ${DEFAULTS.epochs})`,
    },
    iters: { type: "string", valueName: "N", description: "optimizer steps (instead of --epochs)" },
    "class-dropout": {
      type: "string",
      valueName: "F",
      description: `probability of the null class, for CFG (default: ${DEFAULTS.classDropout})`,
    },
    seed: {
      type: "string",
      valueName: "S",
      description:
        `seed of init, data order, P, dropout, random orders (default: ${DEFAULTS.seed})`,
    },
    device: deviceOption,
    precision: precisionOption,
    "eval-every": {
      type: "string",
      valueName: "N",
      description: "validation NLL every N steps; 0: only at the end (default: once per epoch)",
    },
    "eval-steps-per-scale": {
      type: "string",
      valueName: "P",
      description: `fixed P of every scale for validation (default: ${DEFAULTS.evalStepsPerScale})`,
    },
    "eval-batches": {
      type: "string",
      valueName: "N",
      description: "validate on N batches of images spread over the split (default: all)",
    },
    "checkpoint-every": {
      type: "string",
      valueName: "K",
      description:
        `checkpoint every K steps, and at the end (default: ${DEFAULTS.checkpointEvery})`,
    },
    "log-every": {
      type: "string",
      valueName: "N",
      description: `a metrics.jsonl line every N steps (default: ${DEFAULTS.logEvery})`,
    },
    "stop-after": {
      type: "string",
      valueName: "N",
      description: "stop after N steps of this run with a checkpoint (continue with --resume)",
    },
    resume: {
      type: "boolean",
      description: "continue the checkpoint in --out exactly where it stopped",
    },
    zero1: {
      type: "boolean",
      description: "under mpirun/srun: shard the AdamW state over the ranks (ZeRO-1)",
    },
    "bucket-mb": {
      type: "string",
      valueName: "MB",
      description: "under mpirun/srun, cpu: all-reduce the gradients in buckets of MB " +
        "during the backward (default: 0, one all-reduce after it)",
    },
  },
  details: [
    "The model's codebook size, latent dimension (the tokenizer's code vectors), classes and",
    "scales come from the data's manifest; the tokenizer is loaded from the manifest's",
    "tokenizer.path (relative to the manifest's folder) or --tokenizer. AdamW (betas 0.9, 0.95,",
    "weight decay 0.01 on matrices only), warmup then constant lr with step-downs: each of the n",
    "drops multiplies lr by 0.1^(1/n), so the run ends at lr/10. Gradient accumulation sums",
    "--accum micro-batches per step. P, class dropout, random orders and the data order are",
    "functions of (seed, step): --resume repeats an uninterrupted run to the bit. On --resume the",
    "training options come from the checkpoint (giving a different value is an error);",
    "--iters/--epochs may extend the run (the lr schedule then follows the new total).",
    "Ctrl-C stops at the next step boundary after writing a checkpoint (exit status 130).",
    "",
    "Every shard of both splits is read and checked before the first step. A loss or",
    "validation NLL that turns non-finite stops the run (exit 1), keeping the last checkpoint.",
    "",
    "Writes OUT/train-state.safetensors (parameters, AdamW moments and data position: all a",
    "resume reads, in one file written atomically), then OUT/model.safetensors (the weights,",
    "for 'sample' and 'eval'), OUT/tokenizer/ (a copy of the tokenizer, for 'sample') and",
    "OUT/metrics.jsonl (one JSON object per log step: step, epoch, loss in nats, lr,",
    "tokensPerSec, valBitsPerToken). Killed at any moment, a run resumes from its last whole",
    "checkpoint.",
    "",
    'Several processes (README, "Training on many GPUs and machines"): under mpirun -np N or',
    "srun every rank trains on its own N-th of each global --batch (which N must divide) and",
    "the gradients are averaged with one all-reduce per step (NCCL between GPUs when",
    "libnccl.so.2 loads, MPI otherwise); rank 0 alone prints and writes. --zero1 also shards",
    "the AdamW moments: a reduce-scatter, each rank's AdamW step on its shard, an all-gather.",
    "The result is the single process's up to float summation order; --resume works at any",
    "number of ranks. --bucket-mb MB (plain data parallel on the CPU) all-reduces each MB of",
    "finished gradients (the head's, then each layer's from the last) on a communication",
    "thread while the backward goes on; the sums are the same values. It pays where the ranks",
    "have cores to spare and the network is slow; on 2 cores it measured slower (README).",
    "",
    "Example: checkerboard train --data out/mnist-r2 --out out/run1 --model tiny --epochs 10",
  ].join("\n"),
  async run(values) {
    try {
      await trainCommand(values);
    } catch (err) {
      // A read-only or full file system is the user's to fix: one line, not a stack trace.
      throw osErrorAsUserError(err);
    }
  },
};

/** --bucket-mb as float32 values per bucket; 0: one all-reduce after the backward. */
function bucketValuesFrom(values: OptionValues, ranks: number): number {
  const mb = floatOption(values, "bucket-mb", { min: 0 }) ?? 0;
  if (mb > 0 && ranks === 1) {
    throw new UsageError(
      "--bucket-mb buckets the all-reduce between ranks: run under mpirun or srun",
    );
  }
  if (mb > 0 && values.zero1 === true) {
    throw new UsageError(
      "--bucket-mb overlaps plain data parallel's all-reduce; --zero1 exchanges after the " +
        "backward (give one of them)",
    );
  }
  return Math.max(mb > 0 ? 1 : 0, Math.round(mb * 2 ** 20 / 4));
}

async function trainCommand(values: OptionValues): Promise<void> {
  const dataDir = requiredString(values, "data");
  const outDir = requiredString(values, "out");
  const manifest = await readManifest(dataDir);
  const manifestPath = join(dataDir, "manifest.json");
  if (values.ratio !== undefined || values.scales !== undefined) {
    const finalSide = manifest.scales[manifest.scales.length - 1];
    const { scales } = scalesFrom(values, finalSide);
    if (scales.join(",") !== manifest.scales.join(",")) {
      throw new UsageError(
        `--ratio/--scales give scales ${scales.join(",")} but ${manifestPath} has ` +
          `${manifest.scales.join(",")} (re-run 'checkerboard data' to change them)`,
      );
    }
  }
  const resume = values.resume === true;
  const loop = {
    evalSteps: intOption(values, "eval-steps-per-scale", { min: 1 }) ??
      DEFAULTS.evalStepsPerScale,
    evalBatches: intOption(values, "eval-batches", { min: 0 }) ?? 0,
    checkpointEvery: intOption(values, "checkpoint-every", { min: 0 }) ??
      DEFAULTS.checkpointEvery,
    logEvery: intOption(values, "log-every", { min: 1 }) ?? DEFAULTS.logEvery,
    stopAfter: intOption(values, "stop-after", { min: 1 }) ?? 0,
  };
  const evalEveryGiven = intOption(values, "eval-every", { min: 0 });
  const given = trainOptionsFrom(values);
  const givenTotal = totalStepsFrom(values, manifest, given);
  const device = await deviceFrom(values);
  const precision = precisionFrom(values);

  // Every input is checked before the first step: the output folder, the tokenizer, every
  // shard, and on --resume the train state.
  await checkRunFolder(outDir, resume);
  const tokenizer = await tokenizerForManifest(
    manifest,
    dataDir,
    stringOption(values, "tokenizer"),
  );
  await checkTrainingData(dataDir, manifest);
  const w = world();
  if (values.zero1 === true && w.size === 1) {
    throw new UsageError(
      "--zero1 shards the optimizer over several ranks: run under mpirun or srun",
    );
  }
  const bucketValues = bucketValuesFrom(values, w.size);

  const run = resume
    ? await resumedRun(
      values,
      outDir,
      manifest,
      manifestPath,
      tokenizer.dim,
      given,
      device,
      precision,
    )
    : await freshRun(
      values,
      dataDir,
      manifest,
      tokenizer.dim,
      given,
      givenTotal,
      device,
      precision,
    );
  const { model, options, startStep, info } = run;

  try {
    rankRows(options.batch); // a --batch that does not split over the ranks fails here
    // Every rank has checked the folder before rank 0 makes it.
    barrier();
    if (w.isRoot) await prepareRunFolder(outDir, tokenizer, resume);
    const parallel = w.size > 1
      ? model.attachDataParallel({ zero1: values.zero1 === true, bucketValues })
      : undefined;

    const perEpoch = Math.max(
      1,
      Math.floor(batchesPerEpoch(manifest, options.batch) / options.accum),
    );
    const ranks = parallel
      ? `; ${w.size} ranks of ${options.batch / w.size} images, gradients over ` +
        `${parallel.transport}${values.zero1 === true ? ", AdamW sharded (ZeRO-1)" : ""}` +
        (parallel.overlapped
          ? `, all-reduced during the backward in buckets of ${values["bucket-mb"]} MB`
          : bucketValues > 0
          ? ", one all-reduce after the backward (--bucket-mb overlaps on host buffers only)"
          : "")
      : "";
    if (w.isRoot) {
      console.error(
        `${resume ? `resuming at step ${startStep}` : "training"}: ${
          describeConfig(model.config)
        }; ` +
          `${(model.paramCount / 1e6).toFixed(2)}M parameters on ${model.device}; ` +
          `${options.totalSteps} steps of ${options.batch}x${options.accum} images ` +
          `(${splitImages(manifest, "train")} training images), order ${options.order}${ranks}`,
      );
    }
    const result = await train({
      model,
      manifest,
      dataDir,
      outDir,
      codebook: tokenizer.codebook,
      options,
      loop: { ...loop, evalEvery: evalEveryGiven ?? perEpoch },
      startStep,
      info,
    });
    const val = result.lastVal
      ? `, validation ${result.lastVal.bitsPerToken.toFixed(4)} bits/token at P=${loop.evalSteps}`
      : "";
    const stopped = result.step < options.totalSteps
      ? ` (stopped at step ${result.step} of ${options.totalSteps}; continue with --resume)`
      : "";
    const loss = Number.isFinite(result.lastLoss)
      ? `loss ${result.lastLoss.toFixed(4)} nats`
      : "no new steps";
    if (parallel) {
      reportCollectives(result.step - startStep, w.size, model.paramCount, parallel.overlapped);
    }
    if (w.isRoot) {
      console.log(
        `step ${result.step}: ${loss}${val}${stopped}; ` +
          `checkpoint in ${outDir} (metrics: ${join(outDir, METRICS_FILE)})`,
      );
    }
  } finally {
    model.dispose();
  }
}

/**
 * Rank 0's figures of the gradient exchange: the flat gradient buffer (fp32) exchanged per step,
 * of which each rank sends 2 (N-1)/N (a ring all-reduce, or a reduce-scatter and an
 * all-gather under ZeRO-1), the collectives per step and the time per step spent in them
 * (with --bucket-mb on the communication thread, while the backward runs).
 */
function reportCollectives(steps: number, ranks: number, params: number, overlapped: boolean) {
  const k = collectiveCounters();
  if (!world().isRoot || steps < 1) return;
  const mb = params * 4 / 1e6;
  console.error(
    `gradient exchange: ${mb.toFixed(2)} MB of gradients per step in ` +
      `${(k.calls / steps).toFixed(0)} collective(s), ${
        (mb * 2 * (ranks - 1) / ranks).toFixed(2)
      } ` +
      `MB sent by each rank; ${(k.seconds / steps * 1000).toFixed(1)} ms per step` +
      (overlapped ? " (during the backward: compare the steps per second)" : ""),
  );
}

interface PreparedRun {
  model: NativeModel;
  options: TrainOptions;
  startStep: number;
  /** Checkpoint metadata except the step. */
  info: Omit<CheckpointInfo, "step">;
}

async function freshRun(
  values: OptionValues,
  dataDir: string,
  manifest: Manifest,
  latentDim: number,
  given: Omit<TrainOptions, "totalSteps">,
  givenTotal: number | undefined,
  device: "cpu" | "cuda",
  precision: Precision | undefined,
): Promise<PreparedRun> {
  const totalSteps = givenTotal ??
    stepsForEpochs(manifest, given.batch, given.accum, DEFAULTS.epochs);
  const options: TrainOptions = { ...given, totalSteps };
  const preset: PresetName = parsePreset(stringOption(values, "model") ?? DEFAULTS.model);
  const config = buildModelConfig({
    preset,
    depth: intOption(values, "depth", { min: 1 }),
    width: intOption(values, "width", { min: 1 }),
    heads: intOption(values, "heads", { min: 1 }),
    ropeMix: stringOption(values, "rope-mix"),
    vocab: manifest.codes,
    latentDim,
    classes: manifest.classes.length,
    scales: manifest.scales,
  });
  if (batchesPerEpoch(manifest, options.batch) < 1) {
    throw new UsageError(
      `--batch ${options.batch} is larger than the ${
        splitImages(manifest, "train")
      } training images`,
    );
  }
  const { NativeModel } = await import("../../src/model/native_model.ts");
  const model = NativeModel.create(config, device, options.seed, precision);
  return {
    model,
    options,
    startStep: 0,
    info: {
      config,
      tokenizerHash: manifest.tokenizer.hash,
      scales: manifest.scales,
      patch: manifest.patch,
      order: options.order,
      classes: manifest.classes,
      training: { model: preset, ...options, adamw: ADAMW, data: dataDir },
    },
  };
}

async function resumedRun(
  values: OptionValues,
  outDir: string,
  manifest: Manifest,
  manifestPath: string,
  latentDim: number,
  given: Omit<TrainOptions, "totalSteps">,
  device: "cpu" | "cuda",
  precision: Precision | undefined,
): Promise<PreparedRun> {
  const run = await resumeRun(outDir, device, precision);
  try {
    checkShapeOnResume(values, run.info);
    checkAgainstManifest(run.info, manifest, latentDim, run.path, manifestPath);
    const stored = run.options;
    for (const [flag, key] of FIXED_ON_RESUME) {
      if (values[flag] === undefined) continue;
      if (JSON.stringify(given[key]) !== JSON.stringify(stored[key])) {
        throw new UsageError(
          `--${flag} differs from the checkpoint's (${JSON.stringify(stored[key])}); ` +
            `drop it to resume, or train into a new --out`,
        );
      }
    }
    // --iters/--epochs may extend the run (epochs count with the stored batch and accum).
    const totalSteps = totalStepsFrom(values, manifest, stored) ?? stored.totalSteps;
    const startStep = run.info.step;
    // A train state at its last step whose model file is whole means the run is finished; one
    // whose model file is behind (a kill between the two writes) is finished by the resume.
    const finished = startStep > totalSteps ||
      (startStep === totalSteps && (await modelFileStep(outDir)) === startStep);
    if (finished) {
      throw new UserError(
        `${run.path} is already at step ${startStep} of ${totalSteps} (give a larger ` +
          `--iters or --epochs to train on)`,
      );
    }
    const { step: _step, ...rest } = run.info;
    return {
      model: run.model,
      options: { ...stored, totalSteps },
      startStep,
      info: { ...rest, training: { ...rest.training, totalSteps } },
    };
  } catch (err) {
    run.model.dispose();
    throw err;
  }
}
