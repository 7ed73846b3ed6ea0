/** `checkerboard train`: train a class-conditional progressive-checkerboard transformer. */
import { isAbsolute, join, resolve } from "node:path";
import type { Command, OptionValues } from "../command.ts";
import {
  choiceOption,
  floatOption,
  intListOption,
  intOption,
  requiredString,
  stringOption,
} from "../options.ts";
import { deviceFrom, deviceOption, scalesFrom } from "./common.ts";
import { UsageError, UserError } from "../../src/errors.ts";
import { type Manifest, readManifest } from "../../src/data/shards.ts";
import { PatchTokenizer } from "../../src/tokenizer/patch_vq.ts";
import { CHECKPOINT_TOKENIZER_DIR } from "../../src/model/load.ts";
import { ORDER_NAMES, type OrderName } from "../../src/plan/orders.ts";
import { exists } from "../../src/util/files.ts";
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
  checkpointParams,
  hasCheckpoint,
  MODEL_FILE,
  readCheckpoint,
  readOptimState,
} from "../../src/model/checkpoint.ts";
import { parseLrDrops } from "../../src/train/schedule.ts";
import {
  ADAMW,
  batchesPerEpoch,
  METRICS_FILE,
  stepsForEpochs,
  train,
  type TrainOptions,
} from "../../src/train/loop.ts";

/** Defaults, shown in --help. Options that shape training have no parser default, so that an
 * explicit value can be told apart from the default on --resume. */
const DEFAULTS = {
  model: "tiny",
  ropeMix: "none",
  order: "checkerboard",
  stepsTrain: "1,2,4,8,16",
  batch: "32",
  accum: "1",
  lr: "1e-4",
  warmup: "0",
  lrDrops: "0.9,0.95",
  epochs: "1",
  classDropout: "0.1",
  seed: "0",
  evalSteps: "4",
  checkpointEvery: "1000",
  logEvery: "10",
};

/**
 * The tokenizer a manifest names (its `tokenizer.path`, absolute or relative to the working
 * folder), checked against the manifest's hash and codebook size.
 */
export async function tokenizerForManifest(
  manifest: Manifest,
  dataDir: string,
): Promise<PatchTokenizer> {
  const path = manifest.tokenizer.path;
  const where = isAbsolute(path) ? path : resolve(path);
  const manifestPath = join(dataDir, "manifest.json");
  if (!(await exists(join(where, "tokenizer.json")))) {
    throw new UserError(
      `the tokenizer ${path} named by ${manifestPath} is missing (its path is taken relative ` +
        `to the working folder ${Deno.cwd()}; run from where 'checkerboard data' was run)`,
    );
  }
  const tokenizer = await PatchTokenizer.load(where);
  if (tokenizer.config.hash !== manifest.tokenizer.hash) {
    throw new UserError(
      `the tokenizer ${path} has hash ${tokenizer.config.hash} but ${manifestPath} was made ` +
        `with ${manifest.tokenizer.hash} (was the tokenizer refitted? re-run 'checkerboard data')`,
    );
  }
  if (tokenizer.config.codes !== manifest.codes) {
    throw new UserError(
      `the tokenizer ${path} has ${tokenizer.config.codes} codes, ${manifestPath} says ${manifest.codes}`,
    );
  }
  return tokenizer;
}

/** Training options from the command line, each with its default. */
function trainOptionsFrom(values: OptionValues): Omit<TrainOptions, "totalSteps"> {
  const list = intListOption(values, "steps-per-scale-train", { min: 1 }) ??
    DEFAULTS.stepsTrain.split(",").map(Number);
  return {
    order: choiceOption(values, "order", ORDER_NAMES) ?? (DEFAULTS.order as OrderName),
    stepsChoices: list,
    batch: intOption(values, "batch", { min: 1 }) ?? Number(DEFAULTS.batch),
    accum: intOption(values, "accum", { min: 1 }) ?? Number(DEFAULTS.accum),
    lr: floatOption(values, "lr", { min: 0 }) ?? Number(DEFAULTS.lr),
    warmup: intOption(values, "warmup", { min: 0 }) ?? Number(DEFAULTS.warmup),
    lrDrops: parseLrDrops(stringOption(values, "lr-drops") ?? DEFAULTS.lrDrops),
    classDropout: floatOption(values, "class-dropout", { min: 0, max: 1 }) ??
      Number(DEFAULTS.classDropout),
    seed: intOption(values, "seed", { min: 0 }) ?? Number(DEFAULTS.seed),
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
        "checkpoint folder: model.safetensors, optim.safetensors, metrics.jsonl (required)",
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
      description: `P is drawn per batch from this list (default: ${DEFAULTS.stepsTrain})`,
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
        `(default: ${DEFAULTS.lrDrops})`,
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
    "eval-every": {
      type: "string",
      valueName: "N",
      description: "validation NLL every N steps; 0: only at the end (default: once per epoch)",
    },
    "eval-steps-per-scale": {
      type: "string",
      valueName: "P",
      description: `fixed P of every scale for validation (default: ${DEFAULTS.evalSteps})`,
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
  },
  details: [
    "The model's codebook size, latent dimension (the tokenizer's code vectors), classes and",
    "scales come from the data's manifest; the tokenizer is loaded from the manifest's",
    "tokenizer.path (relative to the working folder). AdamW (betas 0.9, 0.95, weight decay",
    "0.01 on matrices only), warmup then constant lr with step-downs: each of the n drops",
    "multiplies lr by 0.1^(1/n), so the run ends at lr/10. Gradient accumulation sums --accum",
    "micro-batches per step. P, class dropout, random orders and the data order are functions",
    "of (seed, step): --resume repeats an uninterrupted run to the bit. On --resume the",
    "training options come from the checkpoint (giving a different value is an error);",
    "--iters/--epochs may extend the run (the lr schedule then follows the new total).",
    "Ctrl-C stops at the next step boundary after writing a checkpoint (exit status 130).",
    "",
    "Writes OUT/model.safetensors, OUT/optim.safetensors, OUT/tokenizer/ (a copy of the",
    "tokenizer, for 'sample') and OUT/metrics.jsonl (one JSON object per log step: step,",
    "epoch, loss in nats, lr, tokensPerSec, valBitsPerToken).",
    "",
    "Example: checkerboard train --data out/mnist-r2 --out out/run1 --model tiny --epochs 10",
  ].join("\n"),
  async run(values) {
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
    const evalSteps = intOption(values, "eval-steps-per-scale", { min: 1 }) ??
      Number(DEFAULTS.evalSteps);
    const evalBatches = intOption(values, "eval-batches", { min: 0 }) ?? 0;
    const checkpointEvery = intOption(values, "checkpoint-every", { min: 0 }) ??
      Number(DEFAULTS.checkpointEvery);
    const logEvery = intOption(values, "log-every", { min: 1 }) ?? Number(DEFAULTS.logEvery);
    const stopAfter = intOption(values, "stop-after", { min: 1 }) ?? 0;
    const evalEveryGiven = intOption(values, "eval-every", { min: 0 });

    const tokenizer = await tokenizerForManifest(manifest, dataDir);
    const { NativeModel } = await import("../../src/model/native_model.ts");

    let options: TrainOptions;
    let info: Omit<CheckpointInfo, "step">;
    let startStep = 0;
    let model;
    if (!resume) {
      if (await hasCheckpoint(outDir)) {
        throw new UserError(
          `${
            join(outDir, MODEL_FILE)
          } already exists (use --resume to continue it, or another --out)`,
        );
      }
      const partial = trainOptionsFrom(values);
      const totalSteps = totalStepsFrom(values, manifest, partial) ??
        stepsForEpochs(manifest, partial.batch, partial.accum, Number(DEFAULTS.epochs));
      options = { ...partial, totalSteps };
      const preset: PresetName = parsePreset(stringOption(values, "model") ?? DEFAULTS.model);
      const config = buildModelConfig({
        preset,
        depth: intOption(values, "depth", { min: 1 }),
        width: intOption(values, "width", { min: 1 }),
        heads: intOption(values, "heads", { min: 1 }),
        ropeMix: stringOption(values, "rope-mix"),
        vocab: manifest.codes,
        latentDim: tokenizer.dim,
        classes: manifest.classes.length,
        scales: manifest.scales,
      });
      if (batchesPerEpoch(manifest, options.batch) < 1) {
        throw new UsageError(
          `--batch ${options.batch} is larger than the ${manifest.counts.train} training images`,
        );
      }
      const device = await deviceFrom(values);
      model = NativeModel.create(config, device, options.seed);
      info = {
        config,
        tokenizerHash: manifest.tokenizer.hash,
        scales: manifest.scales,
        patch: manifest.patch,
        order: options.order,
        classes: manifest.classes,
        training: { model: preset, ...options, adamw: ADAMW, data: dataDir },
      };
    } else {
      if (!(await hasCheckpoint(outDir))) {
        throw new UserError(`--resume: ${join(outDir, MODEL_FILE)} not found (nothing to resume)`);
      }
      const ckpt = await readCheckpoint(outDir);
      checkShapeOnResume(values, ckpt.info);
      checkAgainstManifest(ckpt.info, manifest, ckpt.path, manifestPath);
      const stored = ckpt.info.training as unknown as TrainOptions;
      const given = trainOptionsFrom(values);
      for (const [flag, key] of FIXED_ON_RESUME) {
        if (values[flag] === undefined) continue;
        if (JSON.stringify(given[key]) !== JSON.stringify(stored[key])) {
          throw new UsageError(
            `--${flag} differs from the checkpoint's (${JSON.stringify(stored[key])}); ` +
              `drop it to resume, or train into a new --out`,
          );
        }
      }
      const totalSteps = totalStepsFrom(values, manifest, stored) ?? stored.totalSteps;
      options = {
        order: stored.order,
        stepsChoices: stored.stepsChoices,
        batch: stored.batch,
        accum: stored.accum,
        lr: stored.lr,
        warmup: stored.warmup,
        lrDrops: stored.lrDrops,
        classDropout: stored.classDropout,
        seed: stored.seed,
        totalSteps,
      };
      startStep = ckpt.info.step;
      if (startStep >= totalSteps) {
        throw new UserError(
          `${ckpt.path} is already at step ${startStep} of ${totalSteps} (give a larger ` +
            `--iters or --epochs to train on)`,
        );
      }
      const device = await deviceFrom(values);
      model = NativeModel.create(ckpt.info.config, device, options.seed);
      const params = checkpointParams(ckpt.tensors, model.params, ckpt.path);
      const optim = await readOptimState(outDir, model.params, startStep);
      if (optim.info.data.microBatches !== startStep * options.accum) {
        throw new UserError(
          `${join(outDir, "optim.safetensors")}: data position ${optim.info.data.microBatches} ` +
            `does not match step ${startStep} x accum ${options.accum}`,
        );
      }
      model.setState("params", params);
      model.setState("adamM", optim.adamM);
      model.setState("adamV", optim.adamV);
      model.stepCount = startStep;
      const { step: _step, ...rest } = ckpt.info;
      info = { ...rest, training: { ...rest.training, totalSteps } };
    }

    // The checkpoint carries the tokenizer its codes come from, so `sample` needs nothing else.
    await Deno.mkdir(outDir, { recursive: true });
    await tokenizer.save(join(outDir, CHECKPOINT_TOKENIZER_DIR));

    try {
      const perEpoch = Math.max(
        1,
        Math.floor(batchesPerEpoch(manifest, options.batch) / options.accum),
      );
      console.error(
        `${resume ? `resuming at step ${startStep}` : "training"}: ${
          describeConfig(model.config)
        }; ` +
          `${(model.paramCount / 1e6).toFixed(2)}M parameters on ${model.device}; ` +
          `${options.totalSteps} steps of ${options.batch}x${options.accum} images ` +
          `(${manifest.counts.train} training images), order ${options.order}`,
      );
      const result = await train({
        model,
        manifest,
        dataDir,
        outDir,
        codebook: tokenizer.codebook,
        options,
        loop: {
          evalEvery: evalEveryGiven ?? perEpoch,
          evalSteps,
          evalBatches,
          checkpointEvery,
          logEvery,
          stopAfter,
        },
        startStep,
        info,
      });
      const val = result.lastVal
        ? `, validation ${result.lastVal.bitsPerToken.toFixed(4)} bits/token at P=${evalSteps}`
        : "";
      const stopped = result.step < options.totalSteps
        ? ` (stopped at step ${result.step} of ${options.totalSteps}; continue with --resume)`
        : "";
      console.log(
        `step ${result.step}: loss ${result.lastLoss.toFixed(4)} nats${val}${stopped}; ` +
          `checkpoint in ${outDir} (metrics: ${join(outDir, METRICS_FILE)})`,
      );
    } finally {
      model.dispose();
    }
  },
};
