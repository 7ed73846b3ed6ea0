/**
 * The in-memory image set every dataset source produces, the dataset names a
 * user can give, and the deterministic train/validation split.
 */
import { UsageError } from "../errors.ts";
import { permutation } from "../util/rng.ts";
import type { ImageSource } from "./image_source.ts";

export interface ImageSet {
  /** Dataset spec as the user gave it ("mnist", "emoji", "folder:PATH"). */
  name: string;
  classes: string[];
  /** Side in pixels; every image is side x side RGB. */
  side: number;
  count: number;
  /** (count, side, side, 3) uint8 RGB. */
  pixels: Uint8Array;
  /** (count) class index per image. */
  labels: Int32Array;
}

export type Split = "train" | "val";

/** The fraction of every dataset held out for validation. */
export const VALIDATION_FRACTION = 0.1;
/** Fixed so that the split never depends on a user seed. */
const SPLIT_SEED = 20240601;

/** Image i as a (side, side, 3) view. */
export function imageAt(set: ImageSet, i: number): Uint8Array {
  const size = set.side * set.side * 3;
  return set.pixels.subarray(i * size, (i + 1) * size);
}

/**
 * Indices of the images in `split`, in ascending order. A seeded permutation of
 * 0..count-1 puts its first ceil(10%) into validation; the rest is training.
 */
export function splitIndices(count: number, split: Split): Int32Array {
  const perm = permutation(count, SPLIT_SEED);
  const nVal = Math.ceil(count * VALIDATION_FRACTION);
  const chosen = split === "val" ? perm.subarray(0, nVal) : perm.subarray(nVal);
  return Int32Array.from(chosen).sort();
}

/** Loads a dataset by spec: `mnist`, `emoji` or `folder:PATH`. */
export async function loadDataset(spec: string, opts: { side?: number } = {}): Promise<ImageSet> {
  if (spec === "mnist") return (await import("./mnist.ts")).loadMnist();
  if (spec === "emoji") return (await import("./emoji.ts")).loadEmoji(opts.side);
  if (spec.startsWith("folder:")) {
    const path = spec.slice("folder:".length);
    if (!path) throw new UsageError("--dataset folder: needs a path, e.g. folder:./images");
    return (await import("./folder.ts")).loadFolder(path, opts.side ?? 64, spec);
  }
  throw new UsageError(
    `--dataset: unknown dataset '${spec}' (use mnist, emoji or folder:PATH)`,
  );
}

/**
 * A dataset by spec as a source that decodes images on demand (image_source.ts): a folder is
 * only listed here, never loaded; mnist and emoji are loaded (emoji at `side`).
 */
export async function openSource(spec: string, opts: { side?: number } = {}): Promise<ImageSource> {
  if (spec.startsWith("folder:")) {
    const path = spec.slice("folder:".length);
    if (!path) throw new UsageError("--dataset folder: needs a path, e.g. folder:./images");
    return (await import("./folder.ts")).FolderSource.open(path, spec);
  }
  const { ImageSetSource } = await import("./image_source.ts");
  return new ImageSetSource(await loadDataset(spec, opts));
}

export const DATASET_HELP =
  "mnist | emoji | folder:PATH (one subfolder of PNG/JPEG files per class)";
