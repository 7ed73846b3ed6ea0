/** `checkerboard eval nll`: validation NLL of a checkpoint, per P and per scale. */
import { join } from "node:path";
import type { Command } from "../command.ts";
import {
  choiceOption,
  intOption,
  parseInteger,
  requiredString,
  stringListOption,
  stringOption,
} from "../options.ts";
import { deviceFrom, deviceOption, precisionFrom, precisionOption } from "./common.ts";
import { UsageError, UserError } from "../../src/errors.ts";
import { readManifest } from "../../src/data/shards.ts";
import { tokenizerForManifest } from "../../src/data/manifest_tokenizer.ts";
import { ORDER_NAMES } from "../../src/plan/orders.ts";
import { stepsPerScale, totalSteps } from "../../src/plan/blocks.ts";
import { checkAgainstManifest, readCheckpoint } from "../../src/model/checkpoint.ts";
import { modelFromCheckpoint } from "../../src/model/load.ts";
import { evaluateNll, isFiniteNll, type NllResult, unigramEntropy } from "../../src/train/loop.ts";

/**
 * One --steps-per-scale value: "4" (one P for every scale) or "1,2,4,8" (one P per scale,
 * separated by commas as in `sample` and `plan`).
 */
export function parseEvalSteps(text: string, scaleCount: number): number | number[] {
  if (text.includes(":")) {
    throw new UsageError(
      `--steps-per-scale '${text}': per-scale values are separated by ',' (e.g. 1,2,4,8); ` +
        `give --steps-per-scale again for each further evaluation`,
    );
  }
  const values = text.split(",").map((part) => parseInteger(part, "--steps-per-scale", 1));
  if (values.length === 1) return values[0];
  if (values.length !== scaleCount) {
    throw new UsageError(
      `--steps-per-scale '${text}' has ${values.length} values for the ${scaleCount} scales ` +
        `(give one P, or one per scale; repeat the option for several evaluations)`,
    );
  }
  return values;
}

function formatSteps(steps: number | number[]): string {
  return Array.isArray(steps) ? steps.join(",") : String(steps);
}

const nll: Command = {
  name: "nll",
  summary: "validation NLL in bits per token for each P, overall and per scale",
  usage: "nll --model DIR --data DIR [--steps-per-scale P|P1,P2,...]... [--json] [options]",
  options: {
    model: {
      type: "string",
      valueName: "DIR|FILE",
      description: "checkpoint folder written by 'train', or its model.safetensors (required)",
    },
    data: {
      type: "string",
      valueName: "DIR",
      description: "token shard folder whose validation split is scored (required)",
    },
    "steps-per-scale": {
      type: "string",
      valueName: "P|P1,P2,...",
      default: "4",
      multiple: true,
      description: "steps per scale to score: one P for every scale, or one per scale",
    },
    tokenizer: {
      type: "string",
      valueName: "DIR",
      description: "tokenizer folder (default: the one the data's manifest names)",
    },
    order: {
      type: "string",
      valueName: "NAME",
      description: `within-scale order: ${ORDER_NAMES.join(", ")} (default: the checkpoint's)`,
    },
    batch: { type: "string", valueName: "N", default: "32", description: "images per forward" },
    "max-batches": {
      type: "string",
      valueName: "N",
      description: "score N batches of images spread over the split (default: all)",
    },
    json: { type: "boolean", description: "print one JSON object" },
    device: deviceOption,
    precision: precisionOption,
  },
  details: [
    "NLL is the teacher-forced cross-entropy of the ground-truth codes with the true labels,",
    "in bits per token (nats / ln 2), over the validation split. The unigram entropy of each",
    "scale's validation codes is the floor to beat: the NLL of a model that knows only the",
    "code frequencies of each scale.",
    "",
    "Each --steps-per-scale is one evaluation; give it several times to compare P values.",
    "",
    "Example: checkerboard eval nll --model out/run1 --data out/mnist-r2 \\",
    "  --steps-per-scale 1 --steps-per-scale 4 --steps-per-scale 1,2,4,8",
  ].join("\n"),
  async run(values) {
    const modelPath = requiredString(values, "model");
    const dataDir = requiredString(values, "data");
    const batch = intOption(values, "batch", { min: 1 })!;
    const maxBatches = intOption(values, "max-batches", { min: 1 }) ?? 0;
    const manifest = await readManifest(dataDir);
    const stepsList = stringListOption(values, "steps-per-scale")
      .map((text) => parseEvalSteps(text, manifest.scales.length));
    const ckpt = await readCheckpoint(modelPath);
    const tokenizer = await tokenizerForManifest(
      manifest,
      dataDir,
      stringOption(values, "tokenizer"),
    );
    checkAgainstManifest(
      ckpt.info,
      manifest,
      tokenizer.dim,
      ckpt.path,
      join(dataDir, "manifest.json"),
    );
    const order = choiceOption(values, "order", ORDER_NAMES) ?? ckpt.info.order;
    const device = await deviceFrom(values);
    const model = modelFromCheckpoint(ckpt, device, precisionFrom(values));
    try {
      // The random order of validation image i is seeded from the run's seed (0 if unknown).
      const stored = ckpt.info.training.seed;
      const seed = typeof stored === "number" && Number.isSafeInteger(stored) ? stored : 0;
      const results: NllResult[] = [];
      for (const steps of stepsList) {
        const r = await evaluateNll(model, dataDir, manifest, tokenizer.codebook, {
          steps,
          order,
          batch,
          seed,
          maxBatches,
          quiet: values.json === true,
          label: `validate P=${formatSteps(steps)}`,
        });
        if (!isFiniteNll(r)) {
          throw new UserError(
            `${ckpt.path}: the validation NLL at P=${formatSteps(steps)} is not finite ` +
              `(${r.bitsPerToken} bits per token): the model's outputs overflow`,
          );
        }
        results.push(r);
      }
      const floor = await unigramEntropy(dataDir, manifest, "val");
      const scales = manifest.scales;
      if (values.json) {
        console.log(JSON.stringify({
          checkpoint: ckpt.path,
          step: ckpt.info.step,
          data: dataDir,
          order,
          scales,
          images: results[0].images,
          tokensPerImage: manifest.sequenceLength,
          unigramBits: { overall: floor.bitsPerToken, perScale: floor.perScaleBits },
          results: results.map((r) => ({
            stepsPerScale: r.steps,
            effectiveSteps: stepsPerScale(scales, r.steps),
            totalSteps: totalSteps(scales, r.steps),
            bitsPerToken: r.bitsPerToken,
            perScaleBits: r.perScaleBits,
          })),
        }));
        return;
      }
      const label = (k: number) => `${scales[k]}x${scales[k]}`;
      const width = Math.max(7, ...scales.map((_, k) => label(k).length));
      const names = results.map((r) =>
        `P=${formatSteps(r.steps)} (${totalSteps(scales, r.steps)} st)`
      );
      const nameWidth = Math.max(16, ...names.map((n) => n.length + 1));
      const header = ["", "overall", ...scales.map((_, k) => label(k))]
        .map((h, i) => (i === 0 ? h.padEnd(nameWidth) : h.padStart(width)))
        .join(" ");
      console.log(
        `${ckpt.path} (step ${ckpt.info.step}), order ${order}: validation NLL in bits per token ` +
          `over ${results[0].images} images`,
      );
      console.log(header);
      const row = (name: string, overall: number, perScale: number[]) =>
        [
          name.padEnd(nameWidth),
          ...[overall, ...perScale].map((v) => v.toFixed(4).padStart(width)),
        ].join(" ");
      results.forEach((r, i) => console.log(row(names[i], r.bitsPerToken, r.perScaleBits)));
      console.log(row("unigram floor", floor.bitsPerToken, floor.perScaleBits));
    } finally {
      model.dispose();
    }
  },
};

export const command: Command = {
  name: "eval",
  summary: "evaluate a trained model",
  usage: "eval COMMAND [options]",
  options: {},
  subcommands: [nll],
};
