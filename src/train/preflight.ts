/**
 * Checks of a run's inputs before its first step, so that a bad file is reported at once rather
 * than after hours of training (a corrupt validation shard used to surface only at the final
 * validation, after model.safetensors was written).
 */
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { type Manifest, readShard } from "../data/shards.ts";
import type { Split } from "../data/dataset.ts";
import { splitImages } from "./loop.ts";

/**
 * Reads every shard of both splits and checks it against the manifest: shapes (readShard),
 * every code inside the codebook, every label a class index (the null class index C is not a
 * label a shard may hold). Both splits must hold images.
 */
export async function checkTrainingData(dir: string, manifest: Manifest): Promise<void> {
  const manifestPath = join(dir, "manifest.json");
  for (const split of ["train", "val"] as const satisfies readonly Split[]) {
    if (splitImages(manifest, split) < 1) {
      throw new UserError(`${manifestPath}: lists no ${split} shard with images`);
    }
  }
  const K = manifest.codes;
  const C = manifest.classes.length;
  for (const entry of manifest.shards) {
    const { codes, labels } = await readShard(dir, manifest, entry);
    const path = join(dir, entry.file);
    for (let i = 0; i < codes.length; i++) {
      if (codes[i] >= K) {
        const row = Math.floor(i / manifest.sequenceLength);
        throw new UserError(
          `${path}: code ${codes[i]} in row ${row} is outside the codebook of ${K} codes ` +
            `(shards from another tokenizer?)`,
        );
      }
    }
    for (let i = 0; i < labels.length; i++) {
      if (!(labels[i] >= 0 && labels[i] < C)) {
        throw new UserError(
          `${path}: label ${labels[i]} in row ${i} is not a class index in [0, ${C - 1}] ` +
            `(${manifestPath} names ${C} classes)`,
        );
      }
    }
  }
}
