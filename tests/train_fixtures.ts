/** Small token datasets for the training tests: a random-codebook tokenizer and random codes. */
import { join } from "node:path";
import { PatchTokenizer, TOKENIZER_FORMAT, tokenizerHash } from "../src/tokenizer/patch_vq.ts";
import {
  CODES_LAYOUT,
  type Manifest,
  SHARDS_FORMAT,
  writeManifest,
  writeSplitShards,
} from "../src/data/shards.ts";
import { Rng } from "../src/util/rng.ts";

/** Model options for a model that trains in milliseconds per step. */
export const SMALL = ["--depth", "2", "--width", "32", "--heads", "2", "--device", "cpu"];

/** `train` of a SMALL model on `data` into `out`, then `more` options. */
export function smallTraining(data: string, out: string, ...more: string[]): string[] {
  return ["train", "--data", data, "--out", out, ...SMALL, ...more];
}

/** A tokenizer (random codebook) and shards of random codes, written in-process. */
export async function makeData(
  dir: string,
  o: { codes?: number; scales?: number[]; train?: number; val?: number; name?: string } = {},
): Promise<{ data: string; tokenizer: string }> {
  const K = o.codes ?? 16, patch = 2, scales = o.scales ?? [1, 2, 4];
  const side = scales[scales.length - 1] * patch;
  const name = o.name ?? "d";
  const rng = new Rng(K * 31 + scales.length);
  const codebook = Float32Array.from({ length: K * patch * patch * 3 }, () => rng.next());
  const hash = tokenizerHash(patch, K, codebook);
  const tokenizer = join(dir, `${name}-tok`);
  await new PatchTokenizer({
    format: TOKENIZER_FORMAT,
    version: 1,
    patch,
    codes: K,
    channels: 3,
    imageSide: side,
    dataset: "synthetic",
    fitScales: scales,
    hash,
    fit: { iterations: 0, seed: 0, patches: 0, mse: [] },
  }, codebook).save(tokenizer);
  const data = join(dir, name);
  await Deno.mkdir(data, { recursive: true });
  const L = scales.reduce((a, s) => a + s * s, 0);
  const counts = { train: o.train ?? 24, val: o.val ?? 8 };
  const shards = [];
  for (const split of ["train", "val"] as const) {
    const n = counts[split];
    const codes = new Uint16Array(n * L).map(() => rng.int(K));
    const labels = new Int32Array(n).map(() => rng.int(2));
    shards.push(...await writeSplitShards(data, split, codes, labels, L, 10));
  }
  const manifest: Manifest = {
    format: SHARDS_FORMAT,
    version: 1,
    dataset: "synthetic",
    imageSide: side,
    tokenizer: { hash, patch, codes: K, path: tokenizer },
    ratio: "explicit",
    scales,
    patch,
    codes: K,
    sequenceLength: L,
    classes: ["a", "b"],
    counts,
    shards,
    layout: CODES_LAYOUT,
  };
  await writeManifest(data, manifest);
  return { data, tokenizer };
}
