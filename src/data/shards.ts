/**
 * Token shards: `.npz` files of `codes` uint16 (n, L) (scales concatenated,
 * raster order inside a scale) and `labels` int32 (n), plus `manifest.json`.
 * The writer builds the folder under a temporary name and renames it at the
 * end; the reader streams shuffled batches one shard at a time.
 */
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { encodeNpz, readNpz } from "./npy.ts";
import { writeFileAtomic } from "../util/files.ts";
import { readJsonStrict } from "../util/json.ts";
import { Fields } from "../util/schema.ts";
import { RATIO_NAMES, scalesForRatio } from "../plan/scales.ts";
import { Rng } from "../util/rng.ts";
import type { Split } from "./dataset.ts";
import { type Augment, AUGMENTS } from "./crops.ts";

export const SHARDS_FORMAT = "checkerboard-shards";

export interface ShardEntry {
  file: string;
  split: Split;
  count: number;
}

export interface Manifest {
  format: typeof SHARDS_FORMAT;
  version: 1;
  dataset: string;
  imageSide: number;
  tokenizer: { hash: string; patch: number; codes: number; path: string };
  /** The ratio name the scales came from, or "explicit". */
  ratio: string;
  scales: number[];
  patch: number;
  /** Codebook size K. */
  codes: number;
  /** L = sum of s^2 over scales. */
  sequenceLength: number;
  classes: string[];
  counts: Record<Split, number>;
  shards: ShardEntry[];
  layout: string;
  /**
   * The crops of each training image (crops.ts); validation images are always centre-cropped.
   * Absent in manifests written before it existed (they are "none").
   */
  augment?: Augment;
  /** Images that could not be decoded and so have no rows; absent in older manifests. */
  skipped?: SkippedImages;
}

export interface SkippedImages {
  count: number;
  /** The first MAX_SKIPPED_NAMES of them, relative to the dataset folder, in encoding order. */
  files: string[];
}

/** How many skipped files a manifest names (the count is always complete). */
export const MAX_SKIPPED_NAMES = 100;

export const CODES_LAYOUT =
  "codes uint16 (n, L): scales concatenated from coarsest to finest, raster order (row y, then column x) inside a scale";

/** Writes one split's codes as shards into `dir`; returns their manifest entries. */
export async function writeSplitShards(
  dir: string,
  split: Split,
  codes: Uint16Array, // (n, L)
  labels: Int32Array, // (n)
  L: number,
  shardSize: number,
): Promise<ShardEntry[]> {
  const n = labels.length;
  const entries: ShardEntry[] = [];
  for (let start = 0, index = 0; start < n; start += shardSize, index++) {
    const count = Math.min(shardSize, n - start);
    const file = `${split}-${String(index).padStart(5, "0")}.npz`;
    const bytes = encodeNpz({
      codes: { shape: [count, L], data: codes.slice(start * L, (start + count) * L) },
      labels: { shape: [count], data: labels.slice(start, start + count) },
    });
    await writeFileAtomic(join(dir, file), bytes);
    entries.push({ file, split, count });
  }
  return entries;
}

export async function writeManifest(dir: string, manifest: Manifest) {
  await writeFileAtomic(join(dir, "manifest.json"), JSON.stringify(manifest, null, 2) + "\n");
}

/** Codebook sizes a manifest may name: codes are stored as uint16. */
export const MAX_CODES = 65536;
/** Image sides a manifest may name (far above any real dataset; keeps allocations sane). */
export const MAX_IMAGE_SIDE = 16384;

export async function readManifest(dir: string): Promise<Manifest> {
  const path = join(dir, "manifest.json");
  const value = await readJsonStrict(
    path,
    `is ${dir} a shard folder made by 'checkerboard data'?`,
  );
  return parseManifest(value, path);
}

/**
 * Checks a parsed manifest field by field (the one place this format is checked) and returns
 * it as a Manifest. `file` names it in the messages, e.g.
 * `out/d/manifest.json: 'counts.train' must be an integer, got the text 'x'`.
 */
export function parseManifest(value: unknown, file: string): Manifest {
  const f = Fields.of(value, file, "a shard manifest");
  if (f.raw("format") !== SHARDS_FORMAT) {
    f.fail("format", `must be '${SHARDS_FORMAT}' (is this a shard manifest?)`, f.raw("format"));
  }
  const version = f.int("version");
  if (version !== 1) {
    f.fail("version", "must be 1 (written by another version of checkerboard?)", version);
  }
  const dataset = f.string("dataset", { nonEmpty: true });
  const imageSide = f.int("imageSide", { min: 1, max: MAX_IMAGE_SIDE });
  const t = f.object("tokenizer");
  const tokenizer = {
    hash: t.string("hash", { nonEmpty: true }),
    patch: t.int("patch", { min: 1, max: imageSide }),
    codes: t.int("codes", { min: 2, max: MAX_CODES }),
    path: t.string("path", { nonEmpty: true }),
  };
  const patch = f.int("patch", { min: 1, max: imageSide });
  if (patch !== tokenizer.patch) {
    f.fail("patch", `must equal 'tokenizer.patch' (${tokenizer.patch})`, patch);
  }
  if (imageSide % patch !== 0) {
    f.fail("imageSide", `must be a multiple of 'patch' (${patch})`, imageSide);
  }
  const codes = f.int("codes", { min: 2, max: MAX_CODES });
  if (codes !== tokenizer.codes) {
    f.fail("codes", `must equal 'tokenizer.codes' (${tokenizer.codes})`, codes);
  }
  const scales = readScales(f, imageSide / patch);
  const ratio = f.string("ratio", { nonEmpty: true });
  checkRatio(f, ratio, scales);
  const L = scales.reduce((a, s) => a + s * s, 0);
  const sequenceLength = f.int("sequenceLength");
  if (sequenceLength !== L) {
    f.fail("sequenceLength", `must be the sum of the squared scales (${L})`, sequenceLength);
  }
  const classes = f.stringList("classes", { minLength: 1, nonEmpty: true });
  const repeated = classes.find((c, i) => classes.indexOf(c) !== i);
  if (repeated !== undefined) f.fail("classes", `must be distinct, '${repeated}' is listed twice`);
  const shards = f.objectList("shards", readShardEntry, { minLength: 1 });
  const names = new Set<string>();
  for (const [i, e] of shards.entries()) {
    if (names.has(e.file)) f.fail(`shards[${i}].file`, "names a shard listed before", e.file);
    names.add(e.file);
  }
  const c = f.object("counts");
  const counts = { train: c.int("train", { min: 0 }), val: c.int("val", { min: 0 }) };
  for (const split of ["train", "val"] as const) {
    const sum = shards.filter((e) => e.split === split).reduce((a, e) => a + e.count, 0);
    if (sum === 0) f.fail("shards", `must list at least one '${split}' shard`);
    if (counts[split] !== sum) {
      f.fail(
        `counts.${split}`,
        `must equal the sum of the '${split}' shard counts (${sum})`,
        counts[split],
      );
    }
  }
  const layout = f.has("layout") ? f.string("layout") : CODES_LAYOUT;
  const augment = f.has("augment") ? f.choice("augment", AUGMENTS) : undefined;
  const skipped = f.has("skipped") ? readSkipped(f.object("skipped")) : undefined;
  return {
    format: SHARDS_FORMAT,
    version: 1,
    dataset,
    imageSide,
    tokenizer,
    ratio,
    scales,
    patch,
    codes,
    sequenceLength,
    classes,
    counts,
    shards,
    layout,
    ...(augment === undefined ? {} : { augment }),
    ...(skipped === undefined ? {} : { skipped }),
  };
}

function readSkipped(s: Fields): SkippedImages {
  const count = s.int("count", { min: 0 });
  const files = s.stringList("files", { nonEmpty: true });
  if (files.length > Math.min(count, MAX_SKIPPED_NAMES)) {
    s.fail(
      "files",
      `must name at most 'count' (${count}) and at most ${MAX_SKIPPED_NAMES} files, got ${files.length}`,
    );
  }
  return { count, files };
}

/** Positive integers, strictly increasing, ending at the final grid side. */
function readScales(f: Fields, finalSide: number): number[] {
  const scales = f.intList("scales", { min: 1, max: finalSide }, { minLength: 1 });
  for (let k = 1; k < scales.length; k++) {
    if (scales[k] <= scales[k - 1]) {
      f.fail(
        `scales[${k}]`,
        `must be greater than the scale before it (${scales[k - 1]})`,
        scales[k],
      );
    }
  }
  if (scales[scales.length - 1] !== finalSide) {
    f.fail(
      "scales",
      `must end at the final grid side imageSide / patch = ${finalSide}, got [${scales}]`,
    );
  }
  return scales;
}

/** `ratio` names a ratio whose scales for the final side are `scales`, or is "explicit". */
function checkRatio(f: Fields, ratio: string, scales: number[]) {
  if (ratio === "explicit") return;
  let expected: number[];
  try {
    expected = scalesForRatio(ratio, scales[scales.length - 1]);
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    return f.fail(
      "ratio",
      `must be 'explicit' or a ratio (${RATIO_NAMES.join(", ")} or a number > 1)`,
      ratio,
    );
  }
  if (expected.join(",") !== scales.join(",")) {
    f.fail(
      "ratio",
      `'${ratio}' gives the scales [${expected}], but 'scales' is [${scales}] ` +
        `(use ratio 'explicit' for a hand-made scale list)`,
    );
  }
}

function readShardEntry(e: Fields): ShardEntry {
  const file = e.string("file", { nonEmpty: true });
  // A plain file name inside the shard folder: no path that could point elsewhere.
  if (/[\/\\]/.test(file) || file === "." || file === ".." || file.includes("\0")) {
    e.fail("file", "must be a file name in the shard folder (no '/' or '..')", file);
  }
  return {
    file,
    split: e.choice("split", ["train", "val"] as const),
    count: e.int("count", { min: 1 }),
  };
}

export interface Batch {
  /** (b, L) */
  codes: Uint16Array;
  /** (b) */
  labels: Int32Array;
}

/**
 * Loads one shard and checks it against the manifest: codes uint16 [count, L] each below the
 * codebook size, labels int32 [count] each a class index of the manifest (the null class,
 * index classes.length, is the model's, never a label).
 */
export async function readShard(
  dir: string,
  manifest: Manifest,
  entry: ShardEntry,
): Promise<Batch> {
  const path = join(dir, entry.file);
  const arrays = await readNpz(path);
  const { codes, labels } = arrays;
  const L = manifest.sequenceLength;
  if (!codes || !(codes.data instanceof Uint16Array)) {
    throw new UserError(`${path}: no uint16 array 'codes'`);
  }
  if (!labels || !(labels.data instanceof Int32Array)) {
    throw new UserError(`${path}: no int32 array 'labels'`);
  }
  if (
    codes.shape.length !== 2 || codes.shape[0] !== entry.count || codes.shape[1] !== L ||
    labels.shape.length !== 1 || labels.shape[0] !== entry.count
  ) {
    throw new UserError(
      `${path}: codes [${codes.shape}] and labels [${labels.shape}] do not match the manifest ` +
        `([${entry.count}, ${L}] and [${entry.count}])`,
    );
  }
  const classCount = manifest.classes.length;
  const badLabel = labels.data.findIndex((c) => c < 0 || c >= classCount);
  if (badLabel >= 0) {
    throw new UserError(
      `${path}: row ${badLabel} has label ${labels.data[badLabel]}, but the manifest lists ` +
        `${classCount} classes (labels 0 to ${classCount - 1})`,
    );
  }
  const badCode = codes.data.findIndex((c) => c >= manifest.codes);
  if (badCode >= 0) {
    throw new UserError(
      `${path}: row ${Math.floor(badCode / L)} holds code ${codes.data[badCode]}, but the ` +
        `codebook has ${manifest.codes} codes (0 to ${manifest.codes - 1})`,
    );
  }
  return { codes: codes.data, labels: labels.data };
}

/**
 * Reads every shard of both splits once and checks it (readShard), and that every class of
 * the manifest has at least one training image: a `classes` list edited to another length is
 * refused (longer: classes without images; shorter: labels out of range). Run before training.
 * Returns the number of training images per class.
 */
export async function validateShards(dir: string, manifest: Manifest): Promise<number[]> {
  const perClass = new Array<number>(manifest.classes.length).fill(0);
  for (const entry of manifest.shards) {
    const { labels } = await readShard(dir, manifest, entry);
    if (entry.split === "train") { for (const c of labels) perClass[c]++; }
  }
  const empty = perClass.findIndex((n) => n === 0);
  if (empty >= 0) {
    const missing = perClass.filter((n) => n === 0).length;
    throw new UserError(
      `${join(dir, "manifest.json")}: class '${manifest.classes[empty]}' (index ${empty})` +
        `${missing > 1 ? ` and ${missing - 1} more` : ""} ha${missing > 1 ? "ve" : "s"} no ` +
        `training image in the shards (was 'classes' edited?)`,
    );
  }
  return perClass;
}

export interface BatchOptions {
  batchSize: number;
  /** Shuffle shard order and rows; each epoch reshuffles with (seed, epoch). */
  shuffle?: boolean;
  seed?: number;
  epoch?: number;
  /** Drop a final batch smaller than batchSize. */
  dropLast?: boolean;
}

/**
 * Streams one epoch of `split` as batches. Only the current shard and a
 * carry-over of fewer than batchSize rows are held in memory.
 */
export async function* streamBatches(
  dir: string,
  manifest: Manifest,
  split: Split,
  opts: BatchOptions,
): AsyncGenerator<Batch> {
  const { batchSize, shuffle = false, dropLast = false } = opts;
  const L = manifest.sequenceLength;
  const rng = new Rng((opts.seed ?? 0) * 1000003 + (opts.epoch ?? 0));
  const shards = manifest.shards.filter((s) => s.split === split);
  if (shuffle) rng.shuffle(shards);
  let carryCodes = new Uint16Array(0);
  let carryLabels = new Int32Array(0);
  for (const entry of shards) {
    const shard = await readShard(dir, manifest, entry);
    const rows = Int32Array.from({ length: entry.count }, (_, i) => i);
    if (shuffle) rng.shuffle(rows);
    // Rows of this shard, after the carry-over from the previous one.
    const total = carryLabels.length + entry.count;
    const codes = new Uint16Array(total * L);
    const labels = new Int32Array(total);
    codes.set(carryCodes);
    labels.set(carryLabels);
    rows.forEach((r, i) => {
      const at = carryLabels.length + i;
      codes.set(shard.codes.subarray(r * L, (r + 1) * L), at * L);
      labels[at] = shard.labels[r];
    });
    let start = 0;
    for (; start + batchSize <= total; start += batchSize) {
      yield {
        codes: codes.slice(start * L, (start + batchSize) * L),
        labels: labels.slice(start, start + batchSize),
      };
    }
    carryCodes = codes.slice(start * L);
    carryLabels = labels.slice(start);
  }
  if (carryLabels.length > 0 && !dropLast) yield { codes: carryCodes, labels: carryLabels };
}

/** Codes of scale `k` of every row of a batch: (b, s_k^2), raster order. */
export function scaleCodes(batch: Batch, scales: readonly number[], k: number): Uint16Array {
  const L = scales.reduce((a, s) => a + s * s, 0);
  const offset = scales.slice(0, k).reduce((a, s) => a + s * s, 0);
  const size = scales[k] * scales[k];
  const b = batch.labels.length;
  const out = new Uint16Array(b * size);
  for (let i = 0; i < b; i++) {
    out.set(batch.codes.subarray(i * L + offset, i * L + offset + size), i * size);
  }
  return out;
}
