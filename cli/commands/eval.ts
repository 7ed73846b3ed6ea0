/** `checkerboard eval nll`: validation NLL of a checkpoint, per P and per scale. */
import { join } from "node:path";
import type { Command } from "../command.ts";
import { choiceOption, intOption, requiredString } from "../options.ts";
import { deviceFrom, deviceOption } from "./common.ts";
import { tokenizerForManifest } from "./train.ts";
import { UsageError } from "../../src/errors.ts";
import { readManifest } from "../../src/data/shards.ts";
import { ORDER_NAMES } from "../../src/plan/orders.ts";
import { stepsPerScale, totalSteps } from "../../src/plan/blocks.ts";
import {
  checkAgainstManifest,
  checkpointParams,
  readCheckpoint,
} from "../../src/model/checkpoint.ts";
import { evaluateNll, type NllResult, unigramEntropy } from "../../src/train/loop.ts";

/** "4,8" -> [4, 8]; "1:2:4:4" is one entry with a P per scale. */
function parseStepsList(text: string, scaleCount: number): (number | number[])[] {
  return text.split(",").map((entry) => {
    const parts = entry.trim().split(":");
    const values = parts.map((p) => {
      const n = Number(p);
      if (!/^\d+$/.test(p.trim()) || !Number.isSafeInteger(n) || n < 1) {
        throw new UsageError(
          `--steps-per-scale entries must be positive integers (or P1:P2:... per scale), got '${entry}'`,
        );
      }
      return n;
    });
    if (values.length === 1) return values[0];
    if (values.length !== scaleCount) {
      throw new UsageError(
        `--steps-per-scale entry '${entry}' has ${values.length} values for ${scaleCount} scales`,
      );
    }
    return values;
  });
}

function formatSteps(steps: number | number[]): string {
  return Array.isArray(steps) ? steps.join(":") : String(steps);
}

const nll: Command = {
  name: "nll",
  summary: "validation NLL in bits per token for each P, overall and per scale",
  usage: "nll --model DIR --data DIR --steps-per-scale P[,P2,...] [--json] [options]",
  options: {
    model: {
      type: "string",
      valueName: "DIR",
      description: "checkpoint folder written by 'train' (required)",
    },
    data: {
      type: "string",
      valueName: "DIR",
      description: "token shard folder whose validation split is scored (required)",
    },
    "steps-per-scale": {
      type: "string",
      valueName: "LIST",
      default: "4",
      description: "P values to score, comma-separated; P1:P2:... gives one P per scale",
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
  },
  details: [
    "NLL is the teacher-forced cross-entropy of the ground-truth codes with the true labels,",
    "in bits per token (nats / ln 2), over the validation split. The unigram entropy of each",
    "scale's validation codes is the floor to beat: the NLL of a model that knows only the",
    "code frequencies of each scale.",
    "",
    "Example: checkerboard eval nll --model out/run1 --data out/mnist-r2 --steps-per-scale 1,4,16",
  ].join("\n"),
  async run(values) {
    const modelDir = requiredString(values, "model");
    const dataDir = requiredString(values, "data");
    const batch = intOption(values, "batch", { min: 1 })!;
    const maxBatches = intOption(values, "max-batches", { min: 1 }) ?? 0;
    const manifest = await readManifest(dataDir);
    const ckpt = await readCheckpoint(modelDir);
    checkAgainstManifest(ckpt.info, manifest, ckpt.path, join(dataDir, "manifest.json"));
    const stepsList = parseStepsList(
      requiredString(values, "steps-per-scale"),
      manifest.scales.length,
    );
    const order = choiceOption(values, "order", ORDER_NAMES) ?? ckpt.info.order;
    const tokenizer = await tokenizerForManifest(manifest, dataDir);
    const device = await deviceFrom(values);
    const { NativeModel } = await import("../../src/model/native_model.ts");
    const model = NativeModel.create(ckpt.info.config, device, 0);
    try {
      model.setState("params", checkpointParams(ckpt.tensors, model.params, ckpt.path));
      const seed = Number(ckpt.info.training.seed ?? 0);
      const results: NllResult[] = [];
      for (const steps of stepsList) {
        results.push(
          await evaluateNll(model, dataDir, manifest, tokenizer.codebook, {
            steps,
            order,
            batch,
            seed,
            maxBatches,
            quiet: values.json === true,
          }),
        );
      }
      const floor = await unigramEntropy(dataDir, manifest, "val");
      const scales = manifest.scales;
      if (values.json) {
        console.log(JSON.stringify({
          checkpoint: modelDir,
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
      const header = ["", "overall", ...scales.map((_, k) => label(k))]
        .map((h, i) => (i === 0 ? h.padEnd(16) : h.padStart(width)))
        .join(" ");
      console.log(
        `${ckpt.path} (step ${ckpt.info.step}), order ${order}: validation NLL in bits per token ` +
          `over ${results[0].images} images`,
      );
      console.log(header);
      const row = (name: string, overall: number, perScale: number[]) =>
        [name.padEnd(16), ...[overall, ...perScale].map((v) => v.toFixed(4).padStart(width))]
          .join(" ");
      for (const r of results) {
        console.log(
          row(
            `P=${formatSteps(r.steps)} (${totalSteps(scales, r.steps)} st)`,
            r.bitsPerToken,
            r.perScaleBits,
          ),
        );
      }
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
