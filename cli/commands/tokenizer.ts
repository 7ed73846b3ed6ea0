/**
 * `checkerboard tokenizer fit|train|import|retrain-codebook|recon`: the patch VQ (fit), a VQ
 * autoencoder of LlamaGen's architecture trained here (train, tokenizer_train.ts), LlamaGen's
 * VQ-16 (import, retrain-codebook), and reconstructions of either kind (recon).
 */
import { dirname, join } from "node:path";
import type { Command, OptionValues } from "../command.ts";
import { intOption, requiredString, stringOption } from "../options.ts";
import { deviceFrom, deviceOption, ratioOptions, scalesFrom } from "./common.ts";
import { DATASET_HELP, loadDataset, splitIndices } from "../../src/data/dataset.ts";
import { fitTokenizer, psnr } from "../../src/tokenizer/patch_vq.ts";
import { reconstruct } from "../../src/tokenizer/reconstruction.ts";
import { trainCommand } from "./tokenizer_train.ts";
import { loadTokenizer } from "../../src/tokenizer/load.ts";
import { VqTokenizer } from "../../src/tokenizer/vq_tokenizer.ts";
import { openSizedImages } from "../../src/tokenizer/retrain_images.ts";
import { retrainCodebook } from "../../src/tokenizer/retrain_codebook.ts";
import {
  checkTokenizerOutput,
  writeTokenizerFolder,
} from "../../src/tokenizer/tokenizer_output.ts";
import { tileGrid, writePng } from "../../src/data/png.ts";
import { UsageError, UserError } from "../../src/errors.ts";
import { OutputFolder } from "../../src/util/output_folder.ts";
import { reason, tempNameFor } from "../../src/util/files.ts";

/** Limits that keep every buffer of a fit far below what a machine can allocate. */
const MAX_SIDE = 256, MAX_PATCH = 64, MAX_FIT_PATCHES = 5_000_000, MAX_ITERATIONS = 100_000;
const MAX_RECON_IMAGES = 10_000;
/** Limits of retrain-codebook: image sides, latents held (8 floats each), training images. */
const MAX_RETRAIN_SIDE = 1024, MAX_LATENTS = 50_000_000, MAX_RETRAIN_IMAGES = 10_000_000;

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

const importLlamagen: Command = {
  name: "import",
  summary: "import LlamaGen's VQ-16 checkpoint (vq_ds16_c2i.pt) as a vq tokenizer folder",
  usage: "import --llamagen FILE.pt --out DIR [--force]",
  options: {
    llamagen: {
      type: "string",
      valueName: "FILE.pt",
      description: "LlamaGen VQ checkpoint written by torch.save (required; never executed)",
    },
    out: {
      type: "string",
      valueName: "DIR",
      description: "folder for tokenizer.safetensors and tokenizer.json (required)",
    },
    force: { type: "boolean", description: "replace a tokenizer folder already at --out" },
  },
  details: [
    "The checkpoint's pickle is read by an interpreter of torch.save's opcodes only: any other",
    "opcode or global is refused, nothing in the file is run. The architecture (channels, levels,",
    "blocks, codebook size) is derived from the tensor shapes and checked tensor by tensor.",
    "",
    "Example: checkerboard tokenizer import --llamagen vq_ds16_c2i.pt --out out/vq16",
  ].join("\n"),
  async run(values) {
    const file = requiredString(values, "llamagen");
    const out = requiredString(values, "out");
    const force = values.force === true;
    await checkTokenizerOutput(out, force);
    const tokenizer = await VqTokenizer.importLlamagen(file);
    await writeTokenizerFolder(tokenizer, out, force);
    const a = tokenizer.architecture;
    const source = tokenizer.config.source;
    const sha = source.kind === "llamagen" ? source.sha256.slice(0, 16) : "";
    console.log(
      `imported ${file} (sha256 ${sha}...): ch ${a.ch}, ` +
        `ch_mult [${a.chMult}], z ${a.zChannels}, ${a.codes} codes of ${a.codeDim}, ` +
        `${tokenizer.patch} px per code`,
    );
    console.log(
      `wrote ${join(out, "tokenizer.safetensors")} and tokenizer.json (hash ${tokenizer.hash})`,
    );
  },
};

const retrain: Command = {
  name: "retrain-codebook",
  summary: "fit a new codebook to a vq tokenizer's latents (paper 4.1; encoder, decoder frozen)",
  usage:
    "retrain-codebook --tokenizer DIR --dataset D --out DIR [--codes 4096] [--min-side 16] [--max-side 256] [options]",
  options: {
    tokenizer: {
      type: "string",
      valueName: "DIR",
      description: "vq tokenizer folder from 'tokenizer import' (required)",
    },
    dataset: { type: "string", valueName: "D", description: `${DATASET_HELP} (required)` },
    out: {
      type: "string",
      valueName: "DIR",
      description: "folder for the new tokenizer (required)",
    },
    codes: { type: "string", valueName: "K", default: "4096", description: "new codebook size" },
    "min-side": {
      type: "string",
      valueName: "PX",
      default: "16",
      description: "smallest image side, a multiple of 16",
    },
    "max-side": {
      type: "string",
      valueName: "PX",
      default: "256",
      description: "largest image side, a multiple of 16",
    },
    images: {
      type: "string",
      valueName: "N",
      default: "10000",
      description: "training images read (a seeded choice; each at a seeded random side)",
    },
    iterations: {
      type: "string",
      valueName: "N",
      default: "20",
      description: "spherical k-means iterations after k-means++ seeding",
    },
    seed: { type: "string", valueName: "S", default: "0", description: "random seed" },
    "max-latents": {
      type: "string",
      valueName: "N",
      default: "1000000",
      description: "latent vectors kept for the fit (an evenly spread deterministic subset)",
    },
    device: deviceOption,
    force: { type: "boolean", description: "replace a tokenizer folder already at --out" },
    json: { type: "boolean", description: "print the report as one JSON object" },
  },
  details: [
    "Each image is read at a random side between --min-side and --max-side (multiples of 16),",
    "encoded, and its pre-quantisation latents are l2-normalised. The new codebook minimises the",
    "mean |z/|z| - e|^2 over unit codes e (spherical k-means), the error the l2 quantiser makes.",
    "The report gives that error per image side with the old and the new codebook.",
    "",
    "Example: checkerboard tokenizer retrain-codebook --tokenizer out/vq16 \\",
    "  --dataset folder:./imagenet/train --codes 4096 --out out/vq16-4096",
  ].join("\n"),
  async run(values) {
    const out = requiredString(values, "out");
    const spec = requiredString(values, "dataset");
    const codes = intOption(values, "codes", { min: 2, max: 65536 })!;
    const minSide = intOption(values, "min-side", { min: 1, max: MAX_RETRAIN_SIDE })!;
    const maxSide = intOption(values, "max-side", { min: 1, max: MAX_RETRAIN_SIDE })!;
    const images = intOption(values, "images", { min: 1, max: MAX_RETRAIN_IMAGES })!;
    const iterations = intOption(values, "iterations", { min: 0, max: MAX_ITERATIONS })!;
    const seed = intOption(values, "seed", { min: 0, max: 2 ** 53 - 1 })!;
    const maxLatents = intOption(values, "max-latents", { min: 1, max: MAX_LATENTS })!;
    const force = values.force === true;
    const tokenizer = await loadTokenizer(requiredString(values, "tokenizer"));
    if (!(tokenizer instanceof VqTokenizer)) {
      throw new UserError(
        `--tokenizer ${tokenizer.dir}: a ${tokenizer.kind} tokenizer; retrain-codebook needs a ` +
          `vq tokenizer from 'tokenizer import' (a patch VQ is refitted with 'tokenizer fit')`,
      );
    }
    const p = tokenizer.patch;
    for (const [name, side] of [["min-side", minSide], ["max-side", maxSide]] as const) {
      if (side % p !== 0) {
        throw new UsageError(`--${name} must be a multiple of ${p} (pixels per code), got ${side}`);
      }
    }
    if (minSide > maxSide) {
      throw new UsageError(`--min-side ${minSide} is larger than --max-side ${maxSide}`);
    }
    await checkTokenizerOutput(out, force);
    const device = await deviceFrom(values);
    const set = await openSizedImages(spec);
    const { tokenizer: retrained, report } = await retrainCodebook(tokenizer, set, {
      codes,
      minSide,
      maxSide,
      images,
      iterations,
      seed,
      maxLatents,
      device,
      onPlan: (plan) =>
        console.error(
          `retraining ${codes} codes (was ${tokenizer.codes}) on ${plan.latents} latents of ` +
            `${plan.images} images of ${set.name} at sides ${minSide}..${maxSide}px` +
            (plan.latents < plan.positions ? ` (a subset of ${plan.positions})` : ""),
        ),
    });
    await writeTokenizerFolder(retrained, out, force);
    if (values.json) {
      console.log(JSON.stringify({ tokenizer: retrained.hash, out, ...report }));
      return;
    }
    console.log(
      `latent error |z/|z| - e|^2 per image side (${report.latents} latents of ` +
        `${report.images} images; before: ${tokenizer.codes} imported codes, after: ${codes}):`,
    );
    console.log("   side   latents     before      after");
    for (const x of report.perSide) {
      console.log(
        `  ${String(x.side).padStart(4)}px ${String(x.latents).padStart(9)} ` +
          `${x.before.toFixed(5).padStart(10)} ${x.after.toFixed(5).padStart(10)}`,
      );
    }
    console.log(
      `    all ${String(report.latents).padStart(9)} ${
        report.latentErrorBefore.toFixed(5).padStart(10)
      } ` +
        `${report.latentErrorAfter.toFixed(5).padStart(10)}`,
    );
    const h = report.heldOut;
    if (h) {
      console.log(
        `held out (${h.latents} latents of ${h.images} validation images, never fitted): ` +
          `before ${h.before.toFixed(5)}, after ${h.after.toFixed(5)}`,
      );
    }
    console.log(
      `wrote ${join(out, "tokenizer.safetensors")} and tokenizer.json (hash ${retrained.hash})`,
    );
  },
};

const recon: Command = {
  name: "recon",
  summary: "write originals beside their per-scale reconstructions and print PSNR per scale",
  usage: "recon --tokenizer DIR --out grid.png [--dataset D] [--side PX] [--count N] [--json]",
  options: {
    tokenizer: {
      type: "string",
      valueName: "DIR",
      description: "tokenizer folder of either kind (required)",
    },
    dataset: {
      type: "string",
      valueName: "D",
      description: "dataset (default: the one a patch VQ was fitted on; required for vq)",
    },
    out: { type: "string", valueName: "FILE", description: "PNG grid to write (required)" },
    side: {
      type: "string",
      valueName: "PX",
      description: "image side (default: the patch VQ's fit side; 256 for vq; mnist is 32)",
    },
    count: {
      type: "string",
      valueName: "N",
      default: "16",
      description: "validation images shown in the grid",
    },
    "max-images": {
      type: "string",
      valueName: "N",
      description: "validation images the PSNR is measured on (default: the whole split)",
    },
    ...ratioOptions,
    device: deviceOption,
    json: { type: "boolean", description: "print the PSNR figures as one JSON object" },
  },
  details: [
    "Every scale is encoded from the image area-resized to that scale's pixel size and decoded",
    "again (patch VQ: the code patches; vq: LlamaGen's decoder); PSNR per scale compares each",
    "reconstruction with that resized image over the validation split. Grid rows: original, then",
    "scales coarse to fine (each enlarged to the image side); shown images spread over the split.",
    "",
    "Examples: checkerboard tokenizer recon --tokenizer out/tok --out out/recon.png",
    "          checkerboard tokenizer recon --tokenizer out/vq16 --dataset folder:./val \\",
    "            --scales 1,2,4,8,16 --out out/vq-recon.png",
  ].join("\n"),
  async run(values) {
    const out = requiredString(values, "out");
    const count = intOption(values, "count", { min: 1, max: MAX_RECON_IMAGES })!;
    const maxImages = intOption(values, "max-images", { min: 1 });
    const tokenizer = await loadTokenizer(requiredString(values, "tokenizer"));
    await checkFileTarget(out);
    const spec = stringOption(values, "dataset") ?? tokenizer.defaultDataset;
    if (spec === undefined) {
      throw new UsageError(`--dataset is required for a ${tokenizer.kind} tokenizer`);
    }
    const side = intOption(values, "side", { min: 1, max: MAX_SIDE }) ??
      tokenizer.fixedSide ?? tokenizer.defaultSide;
    const set = await loadDataset(spec, { side });
    if (tokenizer.fixedSide !== undefined && set.side !== tokenizer.fixedSide) {
      throw new UserError(
        `dataset ${set.name} has ${set.side}px images but the tokenizer was fitted for ` +
          `${tokenizer.fixedSide}px`,
      );
    }
    if (set.side % tokenizer.patch !== 0) {
      throw new UserError(
        `dataset ${set.name} has ${set.side}px images, not a multiple of the tokenizer's ` +
          `${tokenizer.patch} px per code (give --side)`,
      );
    }
    const { scales } = scalesFrom(values, set.side / tokenizer.patch);
    const device = await deviceFrom(values);
    const allVal = splitIndices(set.count, "val");
    const val = allVal.subarray(0, Math.min(allVal.length, maxImages ?? allVal.length));
    const { sqErr, tiles } = await reconstruct(tokenizer, set, val, scales, count, device);
    const tileSide = Math.max(set.side, 64);
    const perScale = scales.map((s, k) => ({ side: s, psnr: psnr(sqErr[k] / val.length) }));
    // Each group (original, then every scale) sits on one row, several groups side by side.
    const shown = tiles.length / (scales.length + 1);
    const groupsPerRow = Math.max(1, Math.min(shown, Math.floor(20 / (scales.length + 1))));
    const grid = tileGrid(tiles, tileSide, tileSide, groupsPerRow * (scales.length + 1));
    await writePng(out, grid.rgb, grid.width, grid.height);
    const result = {
      tokenizer: tokenizer.hash,
      kind: tokenizer.kind,
      dataset: set.name,
      side: set.side,
      validationImages: val.length,
      scales: perScale.map((x) => ({ side: x.side, psnrDb: Number(x.psnr.toFixed(3)) })),
      finalPsnrDb: Number(perScale[perScale.length - 1].psnr.toFixed(3)),
      grid: out,
    };
    if (values.json) {
      console.log(JSON.stringify(result));
    } else {
      console.log(
        `validation PSNR per scale (${val.length} images of ${set.name}, ${set.side}px):`,
      );
      for (const x of perScale) {
        console.log(`  ${String(x.side).padStart(3)}x${x.side}: ${x.psnr.toFixed(2)} dB`);
      }
      console.log(`wrote ${out}`);
    }
  },
};

export const command: Command = {
  name: "tokenizer",
  summary:
    "fit a patch VQ, train a VQ autoencoder, import or retrain LlamaGen's VQ-16, or write reconstructions",
  usage: "tokenizer fit|train|import|retrain-codebook|recon [OPTIONS]",
  options: {},
  subcommands: [fit, trainCommand, importLlamagen, retrain, recon],
};
