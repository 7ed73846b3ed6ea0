/** `checkerboard data`: encode a dataset into multiscale token shards. */
import { join } from "node:path";
import type { Command } from "../command.ts";
import { choiceOption, intOption, requiredString, stringOption } from "../options.ts";
import { deviceFrom, deviceOption, ratioOptions, scalesFrom } from "./common.ts";
import { DATASET_HELP, openSource } from "../../src/data/dataset.ts";
import { loadTokenizer } from "../../src/tokenizer/load.ts";
import {
  checkShardOutput,
  DEFAULT_ENCODE_BATCH,
  imageSideFor,
  makeShards,
} from "../../src/data/make_shards.ts";
import { AUGMENTS } from "../../src/data/crops.ts";
import { UsageError } from "../../src/errors.ts";

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
      description: "tokenizer folder from 'tokenizer fit' or 'tokenizer import' (required)",
    },
    out: { type: "string", valueName: "DIR", description: "shard folder to create (required)" },
    side: {
      type: "string",
      valueName: "N",
      description:
        "image side in pixels (default: the tokenizer's: its fit side, 256 for VQ-16); the " +
        "final scale is N / patch",
    },
    ...ratioOptions,
    augment: {
      type: "string",
      valueName: "none|ten-crop",
      default: "none",
      description: "crops of each training image (see below)",
    },
    "shard-size": {
      type: "string",
      valueName: "N",
      default: "4096",
      description: "rows (crops) per shard",
    },
    batch: {
      type: "string",
      valueName: "N",
      default: String(DEFAULT_ENCODE_BATCH),
      description: "crops encoded at once",
    },
    force: { type: "boolean", description: "replace --out if it already exists" },
    device: deviceOption,
  },
  details: [
    "Every image is encoded at every scale separately from the RGB image. Each shard holds",
    "codes uint16 [n, L] (scales concatenated, raster order inside a scale) and labels int32 [n];",
    "manifest.json gives the scales, the tokenizer hash, the classes and the counts per split.",
    "",
    "Crops: the shorter side is resized to --side (lanczos3), then cropped. --augment none",
    "keeps the centre square. --augment ten-crop follows LlamaGen's extract_codes_c2i.py: the",
    "centre square of floor(1.1 * side) pixels, then its four corners and centre (side x side;",
    "top-left, top-right, bottom-left, bottom-right, centre), then the same five of its mirror",
    "image: 10 rows per training image, each its own example. Validation images always get",
    "the centre crop only (one row each): validation measures the model, not the crops.",
    "",
    "A folder dataset streams: files are listed, decoded a few batches ahead in parallel,",
    "encoded in batches of --batch crops, and each shard is written when full, so memory stays",
    "small whatever the dataset's size. An image that cannot be decoded is skipped with a",
    "warning naming it; the manifest counts the skipped images and names the first 100.",
    "",
    "The folder is built in OUT.partial and renamed to OUT when complete. A run that was",
    "stopped (Ctrl-C, SIGKILL, a full disk) continues where it stopped when the same command",
    "is run again, with the same bytes as an uninterrupted run; a run with other arguments",
    "(dataset files, tokenizer, scales, side, augment, shard size, batch, device) starts over.",
    "",
    "Examples: checkerboard data --tokenizer out/tok --ratio 2 --out out/mnist-r2",
    "  checkerboard data --dataset folder:imagenet/train --tokenizer out/vq16 --side 256 \\",
    "    --augment ten-crop --out out/imagenet-256",
  ].join("\n"),
  async run(values) {
    const tokenizerDir = requiredString(values, "tokenizer");
    const out = requiredString(values, "out");
    const shardSize = intOption(values, "shard-size", { min: 1 })!;
    const batchSize = intOption(values, "batch", { min: 1 })!;
    const augment = choiceOption(values, "augment", AUGMENTS) ?? "none";
    const tokenizer = await loadTokenizer(tokenizerDir);
    const side = intOption(values, "side", { min: 1 }) ?? tokenizer.defaultSide;
    if (side % tokenizer.patch !== 0) {
      throw new UsageError(
        `--side ${side} is not a multiple of the tokenizer's patch (${tokenizer.patch} px per code)`,
      );
    }
    if (tokenizer.fixedSide !== undefined && side !== tokenizer.fixedSide) {
      throw new UsageError(
        `--side ${side}: this tokenizer was fitted for ${tokenizer.fixedSide}px images`,
      );
    }
    const { scales, ratio } = scalesFrom(values, side / tokenizer.patch);
    imageSideFor(tokenizer, scales);
    await checkShardOutput(out, values.force === true);
    const dataset = stringOption(values, "dataset") ?? tokenizer.defaultDataset;
    if (dataset === undefined) {
      throw new UsageError(`--dataset is required (the tokenizer ${tokenizerDir} names none)`);
    }
    const source = await openSource(dataset, { side });
    const device = await deviceFrom(values);
    const manifest = await makeShards(source, out, {
      tokenizer,
      tokenizerDir,
      ratio,
      scales,
      augment,
      shardSize,
      batchSize,
      device,
    });
    const skipped = manifest.skipped?.count
      ? `, ${manifest.skipped.count} unreadable image${
        manifest.skipped.count === 1 ? "" : "s"
      } skipped`
      : "";
    console.log(
      `wrote ${manifest.shards.length} shards to ${out}: ${manifest.counts.train} train + ` +
        `${manifest.counts.val} val rows (augment ${augment}), scales ${scales.join(",")}, ` +
        `L = ${manifest.sequenceLength} codes per image${skipped}`,
    );
    console.log(`manifest: ${join(out, "manifest.json")}`);
  },
};
