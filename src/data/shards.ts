/**
 * Token shards: `.npz` files of `codes` uint16 (n, L) (scales concatenated,
 * raster order inside a scale) and `labels` int32 (n), plus `manifest.json`.
 * The writer builds the folder under a temporary name and renames it at the
 * end; the reader streams shuffled batches one shard at a time.
 */
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { encodeNpz, readNpz } from "./npy.ts";
import { readJsonFile, writeFileAtomic } from "../util/files.ts";
import { Rng } from "../util/rng.ts";
import type { Split } from "./dataset.ts";

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
}

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

export async function readManifest(dir: string): Promise<Manifest> {
  const path = join(dir, "manifest.json");
  const manifest: Manifest = await readJsonFile(
    path,
    `is ${dir} a shard folder made by 'checkerboard data'?`,
  );
  if (manifest?.format !== SHARDS_FORMAT || !Array.isArray(manifest.shards)) {
    throw new UserError(`${path}: not a checkerboard shard manifest`);
  }
  return manifest;
}

export interface Batch {
  /** (b, L) */
  codes: Uint16Array;
  /** (b) */
  labels: Int32Array;
}

/** Loads one shard and checks it against the manifest. */
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
  if (codes.shape[0] !== entry.count || codes.shape[1] !== L || labels.shape[0] !== entry.count) {
    throw new UserError(
      `${path}: codes [${codes.shape}] and labels [${labels.shape}] do not match the manifest ` +
        `([${entry.count}, ${L}] and [${entry.count}])`,
    );
  }
  return { codes: codes.data, labels: labels.data };
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
