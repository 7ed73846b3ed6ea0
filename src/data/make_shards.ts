/**
 * Encodes a dataset into a token shard folder (DESIGN.md "Data"): every image at every scale
 * with one tokenizer, the splits as shards, and manifest.json. The folder is built under a
 * temporary name and renamed when complete, so a folder under its final name is always whole.
 */
import type { ImageSet, Split } from "./dataset.ts";
import { splitIndices } from "./dataset.ts";
import type { PatchTokenizer } from "../tokenizer/patch_vq.ts";
import {
  CODES_LAYOUT,
  type Manifest,
  type ShardEntry,
  SHARDS_FORMAT,
  writeManifest,
  writeSplitShards,
} from "./shards.ts";
import { exists } from "../util/files.ts";
import { manifestTokenizerPath } from "./manifest_tokenizer.ts";
import { Progress } from "../util/progress.ts";
import type { Device } from "../engine.ts";

export interface MakeShardsOptions {
  tokenizer: PatchTokenizer;
  /**
   * The tokenizer's folder (absolute or from the working folder); default: the folder it was
   * loaded from. The manifest names it relative to `out`, so the shards work from any folder.
   */
  tokenizerDir?: string;
  /** @deprecated ignored (it meant a path from the working folder); use tokenizerDir. */
  tokenizerPath?: string;
  /** The ratio name the scales came from, or "explicit". */
  ratio: string;
  scales: number[];
  shardSize: number;
  device: Device;
  quiet?: boolean;
}

/** Writes the shard folder `out` (replacing one that exists); returns its manifest. */
export async function makeShards(set: ImageSet, out: string, o: MakeShardsOptions) {
  const { tokenizer, scales } = o;
  tokenizer.checkImages(set);
  const L = scales.reduce((a, s) => a + s * s, 0);
  const tokenizerDir = o.tokenizerDir ?? tokenizer.dir;
  if (tokenizerDir === undefined) {
    throw new Error("makeShards: the tokenizer was not loaded from a folder; pass tokenizerDir");
  }
  const partial = `${out.replace(/\/+$/, "")}.partial-${Deno.pid}`;
  await Deno.mkdir(partial, { recursive: true });
  try {
    const shards: ShardEntry[] = [];
    const counts = { train: 0, val: 0 } as Record<Split, number>;
    for (const split of ["train", "val"] as const) {
      const indices = splitIndices(set.count, split);
      const progress = new Progress(`encode ${split}`, indices.length, "img", { quiet: o.quiet });
      const codes = await tokenizer.encode(set, indices, scales, o.device, progress);
      progress.finish();
      const labels = Int32Array.from(indices, (i) => set.labels[i]);
      shards.push(...await writeSplitShards(partial, split, codes, labels, L, o.shardSize));
      counts[split] = indices.length;
    }
    const manifest: Manifest = {
      format: SHARDS_FORMAT,
      version: 1,
      dataset: set.name,
      imageSide: set.side,
      tokenizer: {
        hash: tokenizer.config.hash,
        patch: tokenizer.patch,
        codes: tokenizer.config.codes,
        path: manifestTokenizerPath(tokenizerDir, out),
      },
      ratio: o.ratio,
      scales,
      patch: tokenizer.patch,
      codes: tokenizer.config.codes,
      sequenceLength: L,
      classes: set.classes,
      counts,
      shards,
      layout: CODES_LAYOUT,
    };
    await writeManifest(partial, manifest);
    if (await exists(out)) await Deno.remove(out, { recursive: true });
    await Deno.rename(partial, out);
    return manifest;
  } catch (err) {
    await Deno.remove(partial, { recursive: true }).catch(() => {});
    throw err;
  }
}
