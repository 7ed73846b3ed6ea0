/**
 * Checks of a run's inputs before its first step, so that a bad file is reported at once rather
 * than after hours of training (a corrupt validation shard used to surface only at the final
 * validation, after model.safetensors was written).
 */
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { type Manifest, validateShards } from "../data/shards.ts";
import type { Split } from "../data/dataset.ts";
import { splitImages } from "./loop.ts";

/**
 * Both splits must hold images, and every shard of both is read and checked against the
 * manifest (validateShards: shapes, codes inside the codebook, labels that are class indices,
 * every class with training images).
 */
export async function checkTrainingData(dir: string, manifest: Manifest): Promise<void> {
  for (const split of ["train", "val"] as const satisfies readonly Split[]) {
    if (splitImages(manifest, split) < 1) {
      throw new UserError(`${join(dir, "manifest.json")}: lists no ${split} shard with images`);
    }
  }
  await validateShards(dir, manifest);
}
