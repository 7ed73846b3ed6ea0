/** `checkerboard data`: encode a dataset into multiscale token shards. */
import { join } from "node:path";
import type { Command } from "../command.ts";
import { intOption, requiredString, stringOption } from "../options.ts";
import { deviceFrom, deviceOption, ratioOptions, scalesFrom } from "./common.ts";
import { DATASET_HELP, loadDataset } from "../../src/data/dataset.ts";
import { PatchTokenizer } from "../../src/tokenizer/patch_vq.ts";
import { checkShardOutput, makeShards } from "../../src/data/make_shards.ts";

export const command: Command = {
  name: "data",
  summary: "encode a dataset into multiscale token shards (.npz) with a manifest",
  usage: "data --dataset D --tokenizer DIR --out DIR [--ratio R | --scales LIST] [options]",
  options: {
    dataset: {
      type: "string",
      valueName: "D",
      description: `${DATASET_HELP} (default: the tokenizer's)`,
    },
    tokenizer: {
      type: "string",
      valueName: "DIR",
      description: "tokenizer folder from 'tokenizer fit' (required)",
    },
    out: { type: "string", valueName: "DIR", description: "shard folder to create (required)" },
    ...ratioOptions,
    "shard-size": {
      type: "string",
      valueName: "N",
      default: "4096",
      description: "images per shard",
    },
    force: { type: "boolean", description: "replace --out if it already exists" },
    device: deviceOption,
  },
  details: [
    "Every image is encoded at every scale separately from the RGB image. Each shard holds",
    "codes uint16 [n, L] (scales concatenated, raster order inside a scale) and labels int32 [n];",
    "manifest.json gives the scales, the tokenizer hash, the classes and the counts per split.",
    "The folder is built under a temporary name and renamed when complete.",
    "",
    "Example: checkerboard data --tokenizer out/tok --ratio 2 --out out/mnist-r2",
  ].join("\n"),
  async run(values) {
    const tokenizerDir = requiredString(values, "tokenizer");
    const out = requiredString(values, "out");
    const shardSize = intOption(values, "shard-size", { min: 1 })!;
    const tokenizer = await PatchTokenizer.load(tokenizerDir);
    const { scales, ratio } = scalesFrom(values, tokenizer.finalSide);
    await checkShardOutput(out, values.force === true);
    const set = await loadDataset(stringOption(values, "dataset") ?? tokenizer.config.dataset, {
      side: tokenizer.config.imageSide,
    });
    const device = await deviceFrom(values);
    const manifest = await makeShards(set, out, {
      tokenizer,
      tokenizerDir,
      ratio,
      scales,
      shardSize,
      device,
    });
    console.log(
      `wrote ${manifest.shards.length} shards to ${out}: ${manifest.counts.train} train + ` +
        `${manifest.counts.val} val images, scales ${scales.join(",")}, ` +
        `L = ${manifest.sequenceLength} codes per image`,
    );
    console.log(`manifest: ${join(out, "manifest.json")}`);
  },
};
