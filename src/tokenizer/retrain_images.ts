/**
 * Images of a dataset read at any side, as the codebook retraining needs them (paper section
 * 4.1: latents from images of random sizes). A folder dataset is decoded by sharp straight to the
 * asked side (centre crop, lanczos3), so a large photo is never held at full size; mnist and emoji
 * are held at their own side and area-resized (resize.ts).
 */
import { join } from "node:path";
import { imageAt, loadDataset, splitIndices } from "../data/dataset.ts";
import { decodeImageFile } from "../data/decode.ts";
import { listFolder } from "../data/folder.ts";
import { UsageError } from "../errors.ts";
import { imagesToInput } from "./vq_tokenizer.ts";

export interface SizedImages {
  /** Dataset spec as the user gave it. */
  readonly name: string;
  /** Indices of the training split (the validation split stays unseen). */
  readonly train: Int32Array;
  /** Indices of the validation split (the held-out measure of the fit). */
  readonly val: Int32Array;
  /** Whether an image that cannot be decoded is skipped (a folder's files) or an error. */
  readonly skipsUnreadable: boolean;
  /** Image i as the encoder's input (3, side, side) in [-1, 1]. */
  read(i: number, side: number): Promise<Float32Array>;
}

/** The images of dataset `spec` (mnist, emoji or folder:PATH), readable at any side. */
export async function openSizedImages(spec: string): Promise<SizedImages> {
  if (spec.startsWith("folder:")) {
    const root = spec.slice("folder:".length);
    if (!root) throw new UsageError("--dataset folder: needs a path, e.g. folder:./images");
    const listing = await listFolder(root);
    return {
      name: spec,
      train: splitIndices(listing.files.length, "train"),
      val: splitIndices(listing.files.length, "val"),
      skipsUnreadable: true,
      read: async (i, side) =>
        imagesToInput(await decodeImageFile(join(root, listing.files[i]), side), 1, side, side),
    };
  }
  const set = await loadDataset(spec);
  return {
    name: spec,
    train: splitIndices(set.count, "train"),
    val: splitIndices(set.count, "val"),
    skipsUnreadable: false,
    read: (i, side) => Promise.resolve(imagesToInput(imageAt(set, i), 1, set.side, side)),
  };
}
