/** `checkerboard tokenizer train`: train a VQ autoencoder of LlamaGen's architecture. */
import type { Command, OptionSpec, OptionValues } from "../command.ts";
import { floatOption, intListOption, intOption, requiredString, stringOption } from "../options.ts";
import { deviceFrom, deviceOption, scalesFrom } from "./common.ts";
import { DATASET_HELP, loadDataset } from "../../src/data/dataset.ts";
import { UsageError, UserError } from "../../src/errors.ts";
import { parseLrDrops } from "../../src/train/schedule.ts";
import { exists, fileSystemError } from "../../src/util/files.ts";
import { METRICS_FILE } from "../../src/util/metrics_log.ts";
import { patchOf, type VqArchitecture } from "../../src/tokenizer/vq_architecture.ts";
import { VqTrainer } from "../../src/tokenizer/vq_trainer.ts";
import { trainVq } from "../../src/tokenizer/vq_train_loop.ts";
import {
  hasVqTrainState,
  optionsProblem,
  readVqTrainState,
  VQ_TRAIN_STATE_FILE,
  type VqTrainOptions,
} from "../../src/tokenizer/vq_train_state.ts";
import { join } from "node:path";

/** Defaults: the bundled MNIST tokenizer's recipe at 32 px (8 x 8 tokens: downsampling 4). */
const DEFAULTS = {
  ch: 32,
  chMult: [1, 2, 2],
  zChannels: 32,
  codes: 512,
  codeDim: 8,
  encoderBlocks: 1,
  decoderBlocks: 2,
  batch: 32,
  steps: 4000,
  lr: 1e-3,
  warmup: 100,
  lrDrops: [0.9, 0.95],
  pixelL1: 0,
  codebookWeight: 1,
  commit: 0.25,
  weightDecay: 0,
  deadAfter: 100,
  seed: 0,
} as const;

const MAX_SIDE = 1024;

/** The options that shape a run: fixed by the train state on --resume. */
const SHAPING = [
  "dataset",
  "side",
  "ratio",
  "scales",
  "ch",
  "ch-mult",
  "z-channels",
  "codes",
  "code-dim",
  "encoder-blocks",
  "decoder-blocks",
  "batch",
  "steps",
  "lr",
  "warmup",
  "lr-drops",
  "l1",
  "codebook-weight",
  "commit",
  "weight-decay",
  "dead-after",
  "seed",
];

function option(valueName: string, description: string): OptionSpec {
  return { type: "string", valueName, description };
}

function architectureFrom(values: OptionValues): VqArchitecture {
  return {
    ch: intOption(values, "ch", { min: 1, max: 4096 }) ?? DEFAULTS.ch,
    chMult: intListOption(values, "ch-mult", { min: 1, max: 64 }) ?? [...DEFAULTS.chMult],
    zChannels: intOption(values, "z-channels", { min: 1, max: 4096 }) ?? DEFAULTS.zChannels,
    codes: intOption(values, "codes", { min: 2, max: 65536 }) ?? DEFAULTS.codes,
    codeDim: intOption(values, "code-dim", { min: 1, max: 1024 }) ?? DEFAULTS.codeDim,
    encoderBlocks: intOption(values, "encoder-blocks", { min: 1, max: 16 }) ??
      DEFAULTS.encoderBlocks,
    decoderBlocks: intOption(values, "decoder-blocks", { min: 1, max: 16 }) ??
      DEFAULTS.decoderBlocks,
  };
}

/** --out must be a folder (or not exist yet); a fresh run must not overwrite another's files. */
async function checkOutFolder(out: string, resume: boolean) {
  const st = await Deno.stat(out).catch((err) => {
    if (err instanceof Deno.errors.NotFound) return null;
    throw fileSystemError(err, `cannot use the output folder ${out}`);
  });
  if (st && !st.isDirectory) throw new UserError(`--out ${out} is a file, not a folder`);
  if (resume) {
    if (!st || !(await hasVqTrainState(out))) {
      throw new UserError(
        `--resume: ${join(out, VQ_TRAIN_STATE_FILE)} not found (nothing to resume)`,
      );
    }
    return;
  }
  for (const file of [VQ_TRAIN_STATE_FILE, "tokenizer.json", "tokenizer.safetensors"]) {
    if (st && await exists(join(out, file))) {
      throw new UserError(
        `${join(out, file)} already exists (use --resume to continue that run, or another --out)`,
      );
    }
  }
}

export const trainCommand: Command = {
  name: "train",
  summary: "train a VQ autoencoder (LlamaGen's architecture) on a dataset, every scale's size",
  usage: "train --dataset D --out DIR [architecture, loss and schedule options] [--resume]",
  options: {
    dataset: option("D", `${DATASET_HELP} (required)`),
    out: option(
      "DIR",
      "run folder; it becomes a tokenizer folder (tokenizer.json, tokenizer.safetensors) with " +
        `${VQ_TRAIN_STATE_FILE} and ${METRICS_FILE} (required)`,
    ),
    side: option("PX", "image side for emoji and folder datasets (mnist is 32)"),
    ratio: option("R", "scale ratio (default 2): sqrt2, 2, 3, 4, single, or a number > 1"),
    scales: option(
      "LIST",
      "explicit token grid sides, e.g. 1,2,4,8 (ending at side / 2^(levels-1))",
    ),
    ch: option("N", `base channels (default ${DEFAULTS.ch}); every width must divide by 32`),
    "ch-mult": option(
      "LIST",
      `channel multiples per level (default ${DEFAULTS.chMult.join(",")}); levels L give ` +
        "downsampling 2^(L-1)",
    ),
    "z-channels": option("N", `encoder output channels (default ${DEFAULTS.zChannels})`),
    codes: option("K", `codebook size (default ${DEFAULTS.codes})`),
    "code-dim": option(
      "D",
      `code dimension (default ${DEFAULTS.codeDim}); codes are l2-normalised`,
    ),
    "encoder-blocks": option(
      "N",
      `ResnetBlocks per encoder level (default ${DEFAULTS.encoderBlocks})`,
    ),
    "decoder-blocks": option(
      "N",
      `ResnetBlocks per decoder level (default ${DEFAULTS.decoderBlocks})`,
    ),
    batch: option("N", `images per step, each at every scale's size (default ${DEFAULTS.batch})`),
    steps: option("N", `optimizer steps (default ${DEFAULTS.steps})`),
    lr: option("LR", `peak AdamW learning rate (default ${DEFAULTS.lr})`),
    warmup: option("N", `linear warmup steps (default ${DEFAULTS.warmup})`),
    "lr-drops": option(
      "LIST",
      `fractions of the run where the rate steps down, to lr/10 in all (default ${
        DEFAULTS.lrDrops.join(",")
      }; none)`,
    ),
    l1: option(
      "W",
      `weight of the mean absolute pixel error beside the squared (default ${DEFAULTS.pixelL1})`,
    ),
    "codebook-weight": option("W", `codebook loss weight (default ${DEFAULTS.codebookWeight})`),
    commit: option("BETA", `commitment loss weight (default ${DEFAULTS.commit})`),
    "weight-decay": option("W", `AdamW decay on conv kernels (default ${DEFAULTS.weightDecay})`),
    "dead-after": option(
      "N",
      `re-initialise a code unused for N steps from a batch latent (default ${DEFAULTS.deadAfter}; 0: never)`,
    ),
    seed: option(
      "S",
      `seed of the weights, the data order and the dead codes (default ${DEFAULTS.seed})`,
    ),
    "eval-every": { ...option("N", "validate every N steps (0: only at the end)"), default: "500" },
    "eval-images": { ...option("N", "validation images per validation"), default: "1000" },
    "checkpoint-every": {
      ...option("N", "checkpoint every N steps (0: only at the end)"),
      default: "500",
    },
    "log-every": { ...option("N", `a ${METRICS_FILE} line every N steps`), default: "10" },
    "stop-after": {
      ...option("N", "stop after N steps of this run, with a checkpoint"),
      default: "0",
    },
    resume: { type: "boolean", description: "continue the run in --out from its train state" },
    device: deviceOption,
    quiet: { type: "boolean", description: "no progress bar" },
  },
  details: [
    "Losses (LlamaGen's VQ training): mean squared pixel error (+ --l1 times the mean absolute),",
    "codebook loss and --commit times the commitment loss, with the straight-through estimator.",
    "Each step encodes its batch at every scale's size: the image area-resized to s * 2^(L-1) px,",
    "as `data` encodes the scales, so coarse scales reconstruct well too. metrics.jsonl has the",
    "training and validation PSNR per scale, codebook usage and perplexity. Ctrl-C stops after the",
    "step with a checkpoint; --resume continues it bit for bit.",
    "",
    "Example: checkerboard tokenizer train --dataset mnist --out out/vq-mnist --steps 3000",
    "         checkerboard tokenizer recon --tokenizer out/vq-mnist --dataset mnist --out r.png",
  ].join("\n"),
  async run(values) {
    const out = requiredString(values, "out");
    const resume = values.resume === true;
    const loop = {
      evalEvery: intOption(values, "eval-every", { min: 0 })!,
      evalImages: intOption(values, "eval-images", { min: 1 })!,
      checkpointEvery: intOption(values, "checkpoint-every", { min: 0 })!,
      logEvery: intOption(values, "log-every", { min: 1 })!,
      stopAfter: intOption(values, "stop-after", { min: 0 })!,
      quiet: values.quiet === true,
    };
    await checkOutFolder(out, resume);
    let options: VqTrainOptions;
    let resumed: Awaited<ReturnType<typeof readVqTrainState>> | undefined;
    if (resume) {
      const given = SHAPING.filter((name) => values[name] !== undefined);
      if (given.length) {
        throw new UsageError(
          `--resume continues the run with the options it was started with; drop ` +
            given.map((n) => `--${n}`).join(", "),
        );
      }
      resumed = await readVqTrainState(out);
      options = resumed.options;
    } else {
      const dataset = requiredString(values, "dataset");
      const architecture = architectureFrom(values);
      const lrDrops = stringOption(values, "lr-drops");
      const side = intOption(values, "side", { min: 1, max: MAX_SIDE });
      const patch = patchOf(architecture);
      // The side first (the dataset's own for mnist), so that a bad downsampling is named before
      // any data is read.
      if (dataset === "mnist" && side !== undefined && side !== 32) {
        throw new UsageError(`mnist images are 32 px; --side ${side} is not possible`);
      }
      const fixedSide = dataset === "mnist" ? 32 : side ?? 64;
      if (fixedSide % patch !== 0) {
        throw new UsageError(
          `the downsampling factor ${patch} (${architecture.chMult.length} levels) does not ` +
            `divide the image side ${fixedSide}; change --ch-mult or --side`,
        );
      }
      options = {
        dataset,
        side: fixedSide,
        scales: scalesFrom(values, fixedSide / patch).scales,
        architecture,
        batch: intOption(values, "batch", { min: 1, max: 4096 }) ?? DEFAULTS.batch,
        totalSteps: intOption(values, "steps", { min: 1 }) ?? DEFAULTS.steps,
        lr: floatOption(values, "lr", { min: 0, max: 1 }) ?? DEFAULTS.lr,
        warmup: intOption(values, "warmup", { min: 0 }) ?? DEFAULTS.warmup,
        lrDrops: lrDrops === undefined ? [...DEFAULTS.lrDrops] : parseLrDrops(lrDrops),
        pixelL1: floatOption(values, "l1", { min: 0 }) ?? DEFAULTS.pixelL1,
        codebookWeight: floatOption(values, "codebook-weight", { min: 0 }) ??
          DEFAULTS.codebookWeight,
        commit: floatOption(values, "commit", { min: 0 }) ?? DEFAULTS.commit,
        weightDecay: floatOption(values, "weight-decay", { min: 0, max: 1 }) ??
          DEFAULTS.weightDecay,
        deadAfter: intOption(values, "dead-after", { min: 0 }) ?? DEFAULTS.deadAfter,
        seed: intOption(values, "seed", { min: 0, max: 2 ** 31 - 1 }) ?? DEFAULTS.seed,
      };
      const problem = optionsProblem(options);
      if (problem) throw new UsageError(problem);
    }
    const device = await deviceFrom(values);
    const set = await loadDataset(options.dataset, { side: options.side });
    if (set.side !== options.side) {
      throw new UserError(
        `dataset ${set.name} has ${set.side} px images, the run ${options.side} px`,
      );
    }
    await Deno.mkdir(out, { recursive: true }).catch((err) => {
      throw fileSystemError(err, `cannot make the output folder ${out}`);
    });
    const trainer = VqTrainer.create(device, options.architecture, options.seed, options.seed);
    try {
      if (resumed) {
        if (resumed.state.params.length !== trainer.paramCount) {
          throw new UserError(
            `${resumed.path}: ${resumed.state.params.length} parameters, the architecture has ` +
              `${trainer.paramCount}`,
          );
        }
        trainer.setState(resumed.state);
      }
      const a = options.architecture;
      if (!loop.quiet) {
        console.error(
          `tokenizer train: ch ${a.ch} x [${a.chMult}], z ${a.zChannels}, ${a.codes} codes of ` +
            `${a.codeDim}, ${trainer.paramCount.toLocaleString("en-US")} parameters; ` +
            `${set.name} at ${options.side} px, scales ${options.scales.join(",")} ` +
            `(${options.scales.map((s) => s * patchOf(a)).join(",")} px), batch ${options.batch}` +
            (resumed ? `; resuming at step ${resumed.state.step}` : ""),
        );
      }
      const r = await trainVq(trainer, options, set, out, device, loop);
      const v = r.validation;
      console.log(
        `step ${r.step}: wrote the tokenizer to ${out}` +
          (v
            ? `; validation PSNR per scale (${v.images} images): ` +
              v.scales.map((s) => `${s.px}px ${s.psnrDb.toFixed(2)} dB`).join(", ")
            : ""),
      );
    } finally {
      trainer.dispose();
    }
  },
};
