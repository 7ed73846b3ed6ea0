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
import { join, resolve } from "node:path";
import { UserError } from "../errors.ts";
import { exists, fileSystemError } from "../util/files.ts";
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
  /** The ratio name the scales came from, or "explicit". */
  ratio: string;
  scales: number[];
  shardSize: number;
  device: Device;
  quiet?: boolean;
}

/**
 * Checks that `out` can become a shard folder: absent, or (with `replace`) an empty folder or
 * a shard folder (one with manifest.json). A file, or a folder of other things, is never
 * replaced: `--force` must not delete what 'checkerboard data' did not make.
 */
export async function checkShardOutput(out: string, replace: boolean): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(out);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw fileSystemError(err, `--out ${out}: cannot check it`);
  }
  if (!info.isDirectory) {
    throw new UserError(`--out ${out} is a file, not a folder (remove it or choose another --out)`);
  }
  if (!replace) throw new UserError(`${out}: already exists (use --force to replace it)`);
  if (await exists(join(out, "manifest.json"))) return;
  for await (const _ of Deno.readDir(out)) {
    throw new UserError(
      `--out ${out} is a folder that holds no manifest.json; --force replaces only shard ` +
        `folders (remove it or choose another --out)`,
    );
  }
}

/**
 * Refuses a dataset whose training split would lack a class (or be empty): training needs
 * every class, and the manifest reader refuses a split without shards.
 */
function checkSplits(set: ImageSet) {
  if (set.count < 2) {
    throw new UserError(
      `dataset ${set.name} has ${set.count} image${set.count === 1 ? "" : "s"}: too few for a ` +
        `training and a validation split`,
    );
  }
  const perClass = new Array<number>(set.classes.length).fill(0);
  for (const i of splitIndices(set.count, "train")) perClass[set.labels[i]]++;
  const missing = perClass.findIndex((n) => n === 0);
  if (missing >= 0) {
    const total = set.labels.filter((l) => l === missing).length;
    throw new UserError(
      `dataset ${set.name}: class '${set.classes[missing]}' has no image in the training split ` +
        `(${total} image${total === 1 ? "" : "s"}, held out for validation; add more)`,
    );
  }
}

/** Writes the shard folder `out` (replacing a shard folder that exists); returns its manifest. */
export async function makeShards(set: ImageSet, out: string, o: MakeShardsOptions) {
  const { tokenizer, scales } = o;
  tokenizer.checkImages(set);
  const L = scales.reduce((a, s) => a + s * s, 0);
  const tokenizerDir = o.tokenizerDir ?? tokenizer.dir;
  if (tokenizerDir === undefined) {
    throw new Error("makeShards: the tokenizer was not loaded from a folder; pass tokenizerDir");
  }
  checkSplits(set);
  await checkShardOutput(out, true);
  // Absolute, so that an --out of "." or "sub/.." still gets a sibling temporary folder.
  const partial = `${resolve(out)}.partial-${Deno.pid}`;
  try {
    await Deno.mkdir(partial, { recursive: true });
  } catch (err) {
    throw fileSystemError(err, `cannot create ${partial}`);
  }
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
    await checkShardOutput(out, true); // again: it may have appeared while encoding
    try {
      if (await exists(out)) await Deno.remove(resolve(out), { recursive: true });
      await Deno.rename(partial, resolve(out));
    } catch (err) {
      throw fileSystemError(err, `cannot move ${partial} to ${out}`);
    }
    return manifest;
  } catch (err) {
    await Deno.remove(partial, { recursive: true }).catch(() => {});
    // A full disk while a shard is written (writeFileAtomic names the shard).
    throw fileSystemError(err, `cannot write the shards into ${partial}`);
  }
}
