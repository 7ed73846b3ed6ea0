/**
 * A small tokenizer and shard folder made in-process (no subprocess, a second or so), for tests
 * that damage one file and expect a clean error.
 */
import type { ImageSet } from "../src/data/dataset.ts";
import { fitTokenizer, PatchTokenizer } from "../src/tokenizer/patch_vq.ts";
import { makeShards } from "../src/data/make_shards.ts";
import type { Manifest } from "../src/data/shards.ts";
import { splitIndices } from "../src/data/dataset.ts";

/** Two classes of 16x16 images, 12 each: stripes and squares with a little variation. */
export function shapesSet(perClass = 12, side = 16): ImageSet {
  const count = 2 * perClass;
  const pixels = new Uint8Array(count * side * side * 3).fill(255);
  const labels = new Int32Array(count);
  for (let n = 0; n < count; n++) {
    const cls = n % 2, i = Math.floor(n / 2);
    labels[n] = cls;
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        const on = cls === 0 ? (x + i) % 4 < 2 : x >= i % 6 && x < i % 6 + 8 && y >= 2 && y < 10;
        if (on) pixels.set([20 * (i % 5), 120, 255 - 10 * i], ((n * side + y) * side + x) * 3);
      }
    }
  }
  return { name: "shapes", classes: ["bars", "blocks"], side, count, pixels, labels };
}

/** Fits a 16-code, 4x4-patch tokenizer on `set` and saves it into `dir`. */
export async function writeTokenizer(
  dir: string,
  set = shapesSet(),
  seed = 1,
): Promise<PatchTokenizer> {
  const fitted = await fitTokenizer(set, {
    patch: 4,
    codes: 16,
    scales: [1, 2, 4],
    iterations: 3,
    seed,
    maxPatches: 10000,
    device: "cpu",
    indices: splitIndices(set.count, "train"),
    quiet: true,
  });
  await fitted.save(dir);
  return PatchTokenizer.load(dir);
}

/** A tokenizer in `root/tok` and shards (scales 1,2,4, 5 images per shard) in `root/shards`. */
export async function writeShardFolder(
  root: string,
): Promise<{ tok: string; shards: string; manifest: Manifest }> {
  const set = shapesSet();
  const tok = `${root}/tok`, shards = `${root}/shards`;
  const tokenizer = await writeTokenizer(tok, set);
  const manifest = await makeShards(set, shards, {
    tokenizer,
    ratio: "2",
    scales: [1, 2, 4],
    shardSize: 5,
    device: "cpu",
    quiet: true,
  });
  return { tok, shards, manifest };
}
