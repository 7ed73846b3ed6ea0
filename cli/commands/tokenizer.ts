/** `checkerboard tokenizer fit|recon`: the patch-VQ tokenizer. */
import { dirname, join } from "node:path";
import type { Command, OptionValues } from "../command.ts";
import { intOption, requiredString, stringOption } from "../options.ts";
import { deviceFrom, deviceOption, ratioOptions, scalesFrom } from "./common.ts";
import { DATASET_HELP, imageAt, loadDataset, splitIndices } from "../../src/data/dataset.ts";
import { fitTokenizer, PatchTokenizer, psnr } from "../../src/tokenizer/patch_vq.ts";
import { resizeArea, upscaleNearest } from "../../src/tokenizer/resize.ts";
import { tileGrid, writePng } from "../../src/data/png.ts";
import { Progress } from "../../src/util/progress.ts";
import { UsageError, UserError } from "../../src/errors.ts";
import { OutputFolder } from "../../src/util/output_folder.ts";
import { reason, tempNameFor } from "../../src/util/files.ts";

/** Limits that keep every buffer of a fit far below what a machine can allocate. */
const MAX_SIDE = 256, MAX_PATCH = 64, MAX_FIT_PATCHES = 5_000_000, MAX_ITERATIONS = 100_000;
const MAX_RECON_IMAGES = 10_000;

/**
 * Checks, before any work, that `path` can be written as one file: not a folder, in a folder
 * that exists and takes a new file.
 */
async function checkFileTarget(path: string) {
  if (path.trim() === "") throw new UsageError("--out needs a file name, got ''");
  const st = await Deno.stat(path).catch(() => null);
  if (st?.isDirectory) {
    throw new UserError(
      `--out ${path} is a folder; recon writes one PNG file (e.g. ${join(path, "recon.png")})`,
    );
  }
  const folder = dirname(path);
  const parent = await Deno.stat(folder).catch(() => null);
  if (!parent?.isDirectory) {
    throw new UserError(`--out ${path}: the folder ${folder} does not exist`);
  }
  const probe = tempNameFor(path);
  try {
    await Deno.writeFile(probe, new Uint8Array(0));
    await Deno.remove(probe);
  } catch (err) {
    throw new UserError(`--out ${path}: cannot write in ${folder}: ${reason(err)}`);
  }
}

const fit: Command = {
  name: "fit",
  summary: "fit a patch-VQ codebook (k-means++ then Lloyd) on a dataset's training split",
  usage: "fit --dataset D --out DIR [--patch p] [--codes K] [options]",
  options: {
    dataset: { type: "string", valueName: "D", default: "mnist", description: DATASET_HELP },
    out: {
      type: "string",
      valueName: "DIR",
      description: "folder for tokenizer.safetensors and tokenizer.json (required)",
    },
    patch: {
      type: "string",
      valueName: "p",
      default: "4",
      description: "patch side in pixels; final token grid = image side / p",
    },
    codes: { type: "string", valueName: "K", default: "512", description: "codebook size" },
    side: {
      type: "string",
      valueName: "PX",
      default: "64",
      description: `image side for emoji and folder datasets, at most ${MAX_SIDE} (mnist is 32)`,
    },
    ...ratioOptions,
    iterations: {
      type: "string",
      valueName: "N",
      default: "20",
      description: "Lloyd iterations after k-means++",
    },
    "max-patches": {
      type: "string",
      valueName: "N",
      default: "200000",
      description: "patches used for the fit (images are subsampled)",
    },
    seed: { type: "string", valueName: "S", default: "0", description: "random seed" },
    device: deviceOption,
  },
  details: [
    "Patches come from every scale of the ratio (or --scales), each scale area-resized",
    "from the RGB image, so one codebook serves all scales.",
    "",
    "Example: checkerboard tokenizer fit --dataset mnist --patch 4 --codes 512 --out out/tok",
  ].join("\n"),
  async run(values) {
    const out = requiredString(values, "out");
    const patch = intOption(values, "patch", { min: 1, max: MAX_PATCH })!;
    const codes = intOption(values, "codes", { min: 2, max: 65536 })!;
    const iterations = intOption(values, "iterations", { min: 0, max: MAX_ITERATIONS })!;
    const maxPatches = intOption(values, "max-patches", { min: 1, max: MAX_FIT_PATCHES })!;
    const seed = intOption(values, "seed", { min: 0, max: 2 ** 53 - 1 })!;
    const side = intOption(values, "side", { min: 1, max: MAX_SIDE })!;
    // The output folder is made and probed for writing before the fit (minutes of work).
    const folder = new OutputFolder(out);
    await folder.prepare({ force: true });
    try {
      await fitAndSave(values, { out, patch, codes, iterations, maxPatches, seed, side });
    } catch (err) {
      await folder.abort(); // removes the folder again if this run made it
      throw err;
    }
  },
};

/** Loads the dataset, fits the codebook and writes it into the prepared folder `o.out`. */
async function fitAndSave(
  values: OptionValues,
  o: {
    out: string;
    patch: number;
    codes: number;
    iterations: number;
    maxPatches: number;
    seed: number;
    side: number;
  },
) {
  const { out, patch, codes, iterations, maxPatches, seed, side } = o;
  const set = await loadDataset(requiredString(values, "dataset"), { side });
  const device = await deviceFrom(values);
  if (set.side % patch !== 0) {
    throw new UsageError(`--patch ${patch} does not divide the image side ${set.side}`);
  }
  const { scales } = scalesFrom(values, set.side / patch);
  console.error(
    `fitting ${codes} codes on ${set.name} (${set.count} images, ${set.side}px), patch ${patch}, scales ${
      scales.join(",")
    }`,
  );
  const tokenizer = await fitTokenizer(set, {
    patch,
    codes,
    scales,
    iterations,
    seed,
    maxPatches,
    device,
    indices: splitIndices(set.count, "train"),
  });
  await tokenizer.save(out);
  const mse = tokenizer.config.fit.mse;
  console.log(
    `wrote ${
      join(out, "tokenizer.safetensors")
    } and tokenizer.json (hash ${tokenizer.config.hash}, ` +
      `mean squared distance per patch ${
        mse.length ? mse[mse.length - 1].toExponential(3) : "n/a"
      })`,
  );
}

const recon: Command = {
  name: "recon",
  summary: "write originals beside their per-scale reconstructions and print PSNR per scale",
  usage: "recon --tokenizer DIR --out grid.png [--dataset D] [--count N] [--json]",
  options: {
    tokenizer: { type: "string", valueName: "DIR", description: "tokenizer folder (required)" },
    dataset: {
      type: "string",
      valueName: "D",
      description: "dataset (default: the one the tokenizer was fitted on)",
    },
    out: { type: "string", valueName: "FILE", description: "PNG grid to write (required)" },
    count: {
      type: "string",
      valueName: "N",
      default: "16",
      description: "validation images shown in the grid",
    },
    ...ratioOptions,
    device: deviceOption,
    json: { type: "boolean", description: "print the PSNR figures as one JSON object" },
  },
  details: [
    "PSNR per scale compares each scale's reconstruction with the image area-resized to that",
    "scale's pixel size, over the whole validation split. Grid rows: original, then scales",
    "coarse to fine (each enlarged to the image side); the shown images are spread over the split.",
  ].join("\n"),
  async run(values) {
    const out = requiredString(values, "out");
    const count = intOption(values, "count", { min: 1, max: MAX_RECON_IMAGES })!;
    const tokenizer = await PatchTokenizer.load(requiredString(values, "tokenizer"));
    await checkFileTarget(out);
    const { scales } = scalesFrom(values, tokenizer.finalSide);
    const set = await loadDataset(stringOption(values, "dataset") ?? tokenizer.config.dataset, {
      side: tokenizer.config.imageSide,
    });
    tokenizer.checkImages(set);
    const device = await deviceFrom(values);
    const val = splitIndices(set.count, "val");
    const progress = new Progress("encode", val.length, "img");
    const codes = await tokenizer.encode(set, val, scales, device, progress);
    progress.finish();
    const L = scales.reduce((a, s) => a + s * s, 0);
    const p = tokenizer.patch;
    const sqErr = new Float64Array(scales.length);
    // Shown images are spread evenly over the split (which is sorted, hence grouped by class).
    const shown = new Set(
      Array.from(
        { length: Math.min(count, val.length) },
        (_, j) => Math.floor((j * val.length) / Math.min(count, val.length)),
      ),
    );
    const tileSide = Math.max(set.side, 64); // small images are enlarged so the grid is legible
    const tiles: Uint8Array[] = [];
    for (let i = 0; i < val.length; i++) {
      const original = imageAt(set, val[i]);
      if (shown.has(i)) tiles.push(upscaleNearest(original, set.side, tileSide));
      let offset = i * L;
      scales.forEach((s, k) => {
        const decoded = tokenizer.decodeScale(codes.subarray(offset, offset + s * s), s);
        offset += s * s;
        // Reference: the original area-resized to this scale (one s x s patch grid).
        const reference = resizeArea(original, set.side, s * p);
        let e = 0;
        for (let j = 0; j < decoded.length; j++) {
          const diff = decoded[j] / 255 - reference[j];
          e += diff * diff;
        }
        sqErr[k] += e / decoded.length;
        if (shown.has(i)) tiles.push(upscaleNearest(decoded, s * p, tileSide));
      });
    }
    const perScale = scales.map((s, k) => ({ side: s, psnr: psnr(sqErr[k] / val.length) }));
    // Each group (original, then every scale) sits on one row, several groups side by side.
    const groupsPerRow = Math.max(1, Math.min(shown.size, Math.floor(20 / (scales.length + 1))));
    const grid = tileGrid(tiles, tileSide, tileSide, groupsPerRow * (scales.length + 1));
    await writePng(out, grid.rgb, grid.width, grid.height);
    const result = {
      tokenizer: tokenizer.config.hash,
      dataset: set.name,
      validationImages: val.length,
      scales: perScale.map((x) => ({ side: x.side, psnrDb: Number(x.psnr.toFixed(3)) })),
      finalPsnrDb: Number(perScale[perScale.length - 1].psnr.toFixed(3)),
      grid: out,
    };
    if (values.json) {
      console.log(JSON.stringify(result));
    } else {
      console.log(`validation PSNR per scale (${val.length} images of ${set.name}):`);
      for (const x of perScale) {
        console.log(`  ${String(x.side).padStart(3)}x${x.side}: ${x.psnr.toFixed(2)} dB`);
      }
      console.log(`wrote ${out}`);
    }
  },
};

export const command: Command = {
  name: "tokenizer",
  summary: "fit a patch-VQ tokenizer or write reconstructions",
  usage: "tokenizer fit|recon [OPTIONS]",
  options: {},
  subcommands: [fit, recon],
};
