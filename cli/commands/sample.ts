/**
 * `checkerboard sample`: class-conditional images from a checkpoint, written as a grid PNG and
 * an .npz for FID tools, optionally one PNG per image, the progressive view (paper Figure 1)
 * and entropy statistics (paper Figures 6 and 7).
 */
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { Command, OptionValues } from "../command.ts";
import { choiceOption, floatOption, intOption, parseIntList, stringOption } from "../options.ts";
import { deviceFrom, deviceOption, precisionFrom, precisionOption } from "./common.ts";
import { UsageError, UserError } from "../../src/errors.ts";
import { ORDER_NAMES } from "../../src/plan/orders.ts";
import { stepsPerScale } from "../../src/plan/blocks.ts";
import type { CheckpointInfo } from "../../src/model/checkpoint.ts";
import type { ImageTokenizer } from "../../src/tokenizer/tokenizer.ts";
import type { Device } from "../../src/engine.ts";
import { encodePng } from "../../src/data/png.ts";
import { exists, reason } from "../../src/util/files.ts";
import { Progress } from "../../src/util/progress.ts";
import { deriveSeed, Rng } from "../../src/util/rng.ts";
import { OutputFolder } from "../../src/util/output_folder.ts";
import { modelFromCheckpoint, readCheckpointWithTokenizer } from "../../src/model/load.ts";
import type { NativeModel } from "../../src/model/native_model.ts";
import {
  checkSampleMemory,
  sampleCodes,
  type SampledCodes,
  type SamplingOptions,
} from "../../src/sample/sampler.ts";
import {
  classGrid,
  decodeFinal,
  panelRows,
  progressivePanels,
  progressivePanelSide,
  progressiveSelection,
  samplesNpz,
  stepLabels,
} from "../../src/sample/render.ts";
import { entropyFigures } from "../../src/sample/figures.ts";
import { rankRange, world } from "../../src/dist/world.ts";
import { gatherSamples } from "../../src/dist/sharded_sampling.ts";
import {
  type ClassSpec,
  imageFileName,
  parseClassSpec,
  resolveClasses,
} from "../../src/sample/classes.ts";

/** The bundled model, relative to this file. */
export const BUNDLED_MODEL = fileURLToPath(new URL("../../models/mnist-tiny", import.meta.url));

const DEFAULTS = {
  perClass: 8,
  steps: "4",
  cfg: "2",
  cfgStart: "5",
  temperature: "1",
  topK: "0",
  topP: "1",
  seed: "0",
  batch: "16",
  out: "out/samples",
};

/** Most images one run samples (50,000 are the usual FID sample). */
export const MAX_IMAGES = 1_000_000;
/** Guidance weights and temperatures beyond these only overflow the logits (images of noise). */
const MAX_GUIDANCE = 100, MAX_TEMPERATURE = 100;
/** Largest value the addon takes for integer options (a C int). */
const MAX_NATIVE_INT = 2 ** 31 - 1;

/** Images shown in progressive.png (the first image of each class, in grid row order). */
const PROGRESSIVE_ROWS = 10;
/** Individual images shown under the mean in entropy-maps.png. */
const ENTROPY_MAP_IMAGES = 3;

/** "4" -> 4; "1,2,4,8" -> one P per scale. 0 anywhere is a UsageError. */
function parseSteps(text: string): number | number[] {
  const values = parseIntList(text, "--steps-per-scale").map((p) => {
    if (p < 1) {
      throw new UsageError(
        `--steps-per-scale must be at least 1 at every scale (a scale needs a step), got '${text}'`,
      );
    }
    return p;
  });
  return values.length === 1 ? values[0] : values;
}

/** Checks the class spec against the checkpoint; returns the classes in grid-row order. */
function classesFor(spec: ClassSpec, info: CheckpointInfo, path: string): number[] {
  const C = info.config.classes;
  if (spec.kind !== "list") return Array.from({ length: C }, (_, c) => c);
  return resolveClasses(spec.entries, info.classes, C, path);
}

/** The number of images, checked against MAX_IMAGES before any array is made. */
function imageCount(
  spec: ClassSpec,
  classes: number[],
  perClass: number | undefined,
  count: number | undefined,
): number {
  const n = count ??
    (perClass ?? DEFAULTS.perClass) * (spec.kind === "random" ? 1 : classes.length);
  if (n > MAX_IMAGES) {
    throw new UsageError(
      `${perClass ?? DEFAULTS.perClass} per class x ${classes.length} classes = ${n} images; ` +
        `at most ${MAX_IMAGES} per run`,
    );
  }
  return n;
}

/** The label of every image: grouped by class, cycled, or drawn at random (seeded). */
function labelsFor(
  spec: ClassSpec,
  classes: number[],
  perClass: number | undefined,
  count: number | undefined,
  seed: number,
): Int32Array {
  if (spec.kind === "random") {
    const n = count ?? DEFAULTS.perClass;
    const rng = new Rng(deriveSeed(seed, 0xc1a55));
    return Int32Array.from({ length: n }, () => classes[rng.int(classes.length)]);
  }
  if (count !== undefined) {
    return Int32Array.from({ length: count }, (_, i) => classes[i % classes.length]);
  }
  const m = perClass ?? DEFAULTS.perClass;
  return Int32Array.from({ length: classes.length * m }, (_, i) => classes[Math.floor(i / m)]);
}

/**
 * The --tokenizer folder: a tokenizer.json or tokenizer.safetensors file given instead stands
 * for its folder; any other file is a UserError.
 */
async function tokenizerFolder(given: string | undefined): Promise<string | undefined> {
  if (given === undefined) return undefined;
  if (given === "") throw new UsageError("--tokenizer needs a folder, got ''");
  let st;
  try {
    st = await Deno.stat(given);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new UserError(`--tokenizer ${given}: no such folder`);
    }
    throw new UserError(`--tokenizer ${given}: ${reason(err)}`);
  }
  if (st.isDirectory) return given;
  if (["tokenizer.json", "tokenizer.safetensors"].includes(basename(given))) {
    return dirname(given);
  }
  throw new UserError(
    `--tokenizer ${given} is a file; give the tokenizer folder (the one holding tokenizer.json ` +
      `and tokenizer.safetensors)`,
  );
}

/** The checkpoint (folder or model file: load.ts takes either) and its tokenizer. */
async function loadModelAndTokenizer(values: OptionValues) {
  const given = stringOption(values, "model");
  if (given === "") throw new UsageError("--model needs a checkpoint folder, got ''");
  const modelDir = given ?? BUNDLED_MODEL;
  if (given === undefined && !(await exists(join(modelDir, "model.safetensors")))) {
    throw new UserError(`the bundled model ${modelDir} is missing; give --model CKPT`);
  }
  const tokenizer = await tokenizerFolder(stringOption(values, "tokenizer"));
  return await readCheckpointWithTokenizer(modelDir, tokenizer);
}

const pngFile = (r: { rgb: Uint8Array; width: number; height: number }) =>
  encodePng(r.rgb, r.width, r.height);

export const command: Command = {
  name: "sample",
  summary: "sample class-conditional images from a checkpoint",
  usage: "sample [--model CKPT] [--classes LIST|all|random] [--per-class N|--count N] [options]",
  options: {
    model: {
      type: "string",
      valueName: "CKPT",
      description: "checkpoint folder written by 'train', or its model.safetensors " +
        "(default: the bundled models/mnist-tiny)",
    },
    tokenizer: {
      type: "string",
      valueName: "DIR",
      description: "tokenizer folder; must be the one the model was trained with " +
        "(default: CKPT/tokenizer)",
    },
    classes: {
      type: "string",
      valueName: "LIST|all|random",
      default: "all",
      description:
        'classes to sample: indices or names like 0,3,7 or "Smileys & Emotion",Animals ' +
        "& Nature, every class, or random per image",
    },
    "per-class": {
      type: "string",
      valueName: "N",
      description: `images per class (default: ${DEFAULTS.perClass})`,
    },
    count: {
      type: "string",
      valueName: "N",
      description: `total images instead: classes cycled (all, list) or drawn at random ` +
        `(at most ${MAX_IMAGES})`,
    },
    "steps-per-scale": {
      type: "string",
      valueName: "P|P1,P2,...",
      default: DEFAULTS.steps,
      description: "steps at every scale, or one per scale (clamped to s^2)",
    },
    cfg: {
      type: "string",
      valueName: "W",
      default: DEFAULTS.cfg,
      description: "classifier-free guidance weight, l = l_c + W (l_c - l_u); 0 is off",
    },
    "cfg-start": {
      type: "string",
      valueName: "STEP",
      default: DEFAULTS.cfgStart,
      description: "guidance is off for the first STEP steps",
    },
    temperature: {
      type: "string",
      valueName: "T",
      default: DEFAULTS.temperature,
      description: "sampling temperature; 0 is greedy",
    },
    "top-k": {
      type: "string",
      valueName: "K",
      default: DEFAULTS.topK,
      description: "keep the K most likely codes; 0 keeps all",
    },
    "top-p": {
      type: "string",
      valueName: "P",
      default: DEFAULTS.topP,
      description: "nucleus: keep the fewest codes reaching probability P; 1 keeps all",
    },
    seed: {
      type: "string",
      valueName: "S",
      default: DEFAULTS.seed,
      description: "seed of the codes, random orders and random classes",
    },
    batch: {
      type: "string",
      valueName: "N",
      default: DEFAULTS.batch,
      description: "images per native call (does not change the images)",
    },
    order: {
      type: "string",
      valueName: "NAME",
      description: `within-scale order: ${ORDER_NAMES.join(", ")} (default: the checkpoint's)`,
    },
    device: deviceOption,
    precision: precisionOption,
    threads: {
      type: "string",
      valueName: "N",
      description: "threads of the cpu backend, OpenBLAS's included (default: one per core)",
    },
    out: {
      type: "string",
      valueName: "DIR",
      default: DEFAULTS.out,
      description: "output folder (created; an existing one must be empty unless --force)",
    },
    force: {
      type: "boolean",
      description: "write into an existing, non-empty output folder (replacing its outputs)",
    },
    individual: {
      type: "boolean",
      description: "also write OUT/images/NNNNN-C-NAME.png per image",
    },
    progressive: {
      type: "boolean",
      description: "also write progressive.png: the canvas after every step (Figure 1)",
    },
    entropy: {
      type: "boolean",
      description: "also write entropy.json, entropy.png and entropy-maps.png (Figures 6, 7)",
    },
  },
  details: [
    "Writes into OUT:",
    "  grid.png           one row per class, that class's images across (final scale)",
    "  samples.npz        arr_0 uint8 [n, H, W, 3] (as the ADM FID evaluator reads it),",
    "                     labels int32 [n]",
    "  images/            with --individual: NNNNN-C-NAME.png: image index, class index and",
    "                     class name in lower case letters and digits (the folder is replaced)",
    "  progressive.png    with --progressive: a row per image (the first of each class, at most",
    `                     ${PROGRESSIVE_ROWS} rows), a panel per step: the step's scale decoded, its`,
    "                     locations not sampled yet masked grey, resized to the final size",
    "  entropy.json       with --entropy: per step (1-based) the mean, 25th and 75th percentile",
    "                     over images of each image's mean entropy (bits) of the locations",
    "                     sampled at that step; per scale the mean entropy map (raster order)",
    "  entropy.png        the per-step mean with its 25-75% band; dashed lines between scales",
    "  entropy-maps.png   per scale, the entropy of each location averaged over the images,",
    `                     then of the first image of ${ENTROPY_MAP_IMAGES} classes; one colour scale`,
    "",
    "Every file is written under a temporary name and renamed when all are done; an output",
    "folder that cannot be created or written, or that is not empty (without --force), is an",
    "error before sampling starts. The default",
    "guidance W = 2 suits the small MNIST models; guidance is off for the first 5 steps (the",
    "1x1 and 2x2 scales at ratio 2 with P = 4, as in the paper). Image i draws its random",
    "numbers from (seed, i, slot): the images do not depend on --batch or the device.",
    "",
    "Examples:",
    "  checkerboard sample --model out/run1 --classes 0,1,2 --per-class 4 --progressive --out out/s",
    '  checkerboard sample --model out/emoji --classes "Smileys & Emotion",Animals --out out/e',
  ].join("\n"),
  async run(values) {
    // Options that need no checkpoint first (usage errors, exit 2).
    const spec = parseClassSpec(stringOption(values, "classes") ?? "all");
    const perClass = intOption(values, "per-class", { min: 1, max: MAX_IMAGES });
    const count = intOption(values, "count", { min: 1, max: MAX_IMAGES });
    if (perClass !== undefined && count !== undefined) {
      throw new UsageError("give --per-class or --count, not both");
    }
    if (spec.kind === "random" && perClass !== undefined) {
      throw new UsageError(
        "--classes random draws each image's class: give --count, not --per-class",
      );
    }
    const steps = parseSteps(stringOption(values, "steps-per-scale") ?? DEFAULTS.steps);
    const guidance = floatOption(values, "cfg", { min: 0, max: MAX_GUIDANCE })!;
    const guidanceStart = intOption(values, "cfg-start", { min: 0, max: MAX_NATIVE_INT })!;
    const temperature = floatOption(values, "temperature", { min: 0, max: MAX_TEMPERATURE })!;
    const topK = intOption(values, "top-k", { min: 0, max: MAX_NATIVE_INT })!;
    const topP = floatOption(values, "top-p", { min: 0, max: 1 })!;
    if (!(topP > 0)) throw new UsageError("--top-p must be greater than 0");
    const seed = intOption(values, "seed", { min: 0, max: 2 ** 53 - 1 })!;
    const batch = intOption(values, "batch", { min: 1, max: MAX_IMAGES })!;
    const orderGiven = choiceOption(values, "order", ORDER_NAMES);
    const outDir = stringOption(values, "out") ?? DEFAULTS.out;
    if (outDir.trim() === "") throw new UsageError("--out needs a folder, got ''");
    const threads = intOption(values, "threads", { min: 1, max: 1024 });

    // Checkpoint, tokenizer, classes, plan (user errors, exit 1).
    const loaded = await loadModelAndTokenizer(values);
    const { info, path, tokenizer } = loaded;
    const scales = info.config.scales;
    if (Array.isArray(steps) && steps.length !== scales.length) {
      throw new UserError(
        `--steps-per-scale lists ${steps.length} values but ${path} has ${scales.length} ` +
          `scales (${scales.join(",")}); give one P or ${scales.length} values`,
      );
    }
    const classes = classesFor(spec, info, path);
    const n = imageCount(spec, classes, perClass, count);
    const rowOrder = spec.kind === "random" ? [] : classes;
    const effective = stepsPerScale(scales, steps);
    const planSteps = effective.reduce((a, b) => a + b, 0);
    const o: SamplingOptions = {
      steps,
      order: orderGiven ?? info.order,
      guidance,
      guidanceStart,
      temperature,
      topK,
      topP,
      seed,
      batch,
      entropy: values.entropy === true,
    };
    const side = scales[scales.length - 1] * tokenizer.patch;
    checkSampleMemory(n, scales.reduce((a, s) => a + s * s, 0), side, o);
    const labels = labelsFor(spec, classes, perClass, count, seed); // (n)

    // Several ranks: each samples and decodes its own range of the images; rank 0 writes.
    const w = world();
    const mine = rankRange(n);
    const out = new OutputFolder(outDir);
    if (w.isRoot) await out.prepare({ force: values.force === true });
    if (w.size > 1 && values.progressive === true) {
      throw new UsageError("--progressive runs in one process (drop it under mpirun/srun)");
    }
    let model: NativeModel | undefined;
    try {
      const device = await deviceFrom(values);
      if (threads !== undefined) (await import("../../src/engine.ts")).setThreads(threads);
      model = modelFromCheckpoint(loaded, device, precisionFrom(values));
      const ranks = w.size > 1 ? ` over ${w.size} ranks` : "";
      if (w.isRoot) {
        console.log(
          `${path} (step ${info.step}): ${n} images of classes ${
            spec.kind === "random" ? "random" : classes.join(",")
          } on ${device}; scales ${scales.join(",")}, P ${
            effective.join(",")
          }: ${planSteps} steps, ` +
            `order ${o.order}, cfg ${guidance} after the first ${guidanceStart} steps, ` +
            `temperature ${temperature}, top-k ${
              topK || "off"
            }, top-p ${topP}, seed ${seed}${ranks}`,
        );
      }
      const progress = new Progress("sampling", mine.end - mine.begin, "img", {
        quiet: !w.isRoot,
      });
      const own = await sampleCodes(
        model,
        tokenizer.codebook,
        labels.subarray(mine.begin, mine.end),
        { ...o, imageIndex0: mine.begin },
        (done, step, total) => progress.update(done, `step ${step}/${total}`),
      );
      progress.finish("");
      // n x (side, side, 3)
      const decoded = await decodeFinal(tokenizer, own.codes, own.labels.length, scales, device);
      const all = gatherSamples(own, decoded, labels);
      if (all === null) return; // another rank than 0: rank 0 writes
      const sampled = all.sampled;
      await writeOutputs(
        out,
        values,
        sampled,
        all.images,
        tokenizer,
        o,
        rowOrder,
        info.classes,
        device,
      );
      const written = await out.commit();
      const perImage = sampled.seconds / Math.max(1, n);
      console.log(
        `${sampled.totalSteps} steps per image (${sampled.forwardPasses} forward passes): ` +
          `${(perImage * 1000).toFixed(1)} ms per image, ` +
          `${(n / Math.max(1e-9, sampled.seconds)).toFixed(2)} images/s`,
      );
      for (const p of written) console.log(`wrote ${p}`);
    } catch (err) {
      if (w.isRoot) await out.abort();
      throw err;
    } finally {
      model?.dispose();
    }
  },
};

/** Renders every output and stages it in `out`. */
async function writeOutputs(
  out: OutputFolder,
  values: OptionValues,
  r: SampledCodes,
  images: Uint8Array[], // n x (side, side, 3), decoded from r.codes
  tokenizer: ImageTokenizer,
  o: SamplingOptions,
  rowOrder: number[],
  classNames: readonly string[],
  device: Device,
) {
  const n = r.labels.length, scales = r.scales;
  const side = scales[scales.length - 1] * tokenizer.patch;
  const grid = classGrid(images, side, r.labels, rowOrder, { classNames });
  await out.stage("grid.png", pngFile(grid));
  await out.stage("samples.npz", samplesNpz(images, side, r.labels));

  if (values.individual === true) {
    const folder = await out.stageFolder("images");
    for (let i = 0; i < n; i++) {
      const name = imageFileName(i, r.labels[i], classNames);
      await out.writeIn(folder, name, encodePng(images[i], side, side));
    }
  }

  if (values.progressive === true) {
    const panel = progressivePanelSide(side);
    const shown = progressiveSelection(r.labels, rowOrder, PROGRESSIVE_ROWS);
    const rows: Uint8Array[][] = [];
    for (const i of shown) {
      rows.push(
        await progressivePanels(
          tokenizer,
          r.codes,
          r.stepOf,
          r.scales,
          r.totalSteps,
          i,
          panel,
          device,
        ),
      );
    }
    const picture = panelRows(rows, panel, r.totalSteps, {
      columnLabels: stepLabels(r.stepOf.subarray(0, r.length), scales, r.totalSteps),
      rowLabels: shown.map((i) => classNames[r.labels[i]] ?? String(r.labels[i])),
    });
    await out.stage("progressive.png", pngFile(picture));
  }

  if (values.entropy === true && r.entropy) {
    const fig = entropyFigures({ ...r, entropy: r.entropy }, o, rowOrder, ENTROPY_MAP_IMAGES);
    await out.stage("entropy.json", fig.json);
    await out.stage("entropy.png", pngFile(fig.plot));
    await out.stage("entropy-maps.png", pngFile(fig.maps));
  }
}
