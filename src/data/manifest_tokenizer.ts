/**
 * The tokenizer a shard manifest was encoded with. The manifest's `tokenizer.path` is taken
 * relative to the manifest's own folder (or as is when absolute), so a shard folder works from
 * any working folder; `checkerboard data` writes it that way. A given folder (`--tokenizer DIR`)
 * replaces it. Either way the tokenizer must have the manifest's hash and codebook size.
 */
import { isAbsolute, join, relative, resolve } from "node:path";
import { UserError } from "../errors.ts";
import { exists } from "../util/files.ts";
import { loadTokenizer } from "../tokenizer/load.ts";
import type { ImageTokenizer } from "../tokenizer/tokenizer.ts";
import type { Manifest } from "./shards.ts";

/** The folder of the tokenizer a manifest in `dataDir` names (absolute, or from the working folder). */
export function tokenizerDirOf(manifest: Manifest, dataDir: string): string {
  const path = manifest.tokenizer.path;
  return isAbsolute(path) ? path : join(dataDir, path);
}

/**
 * Loads and checks the tokenizer of the manifest in `dataDir`; `override` (a folder, relative
 * to the working folder) replaces the one the manifest names.
 */
export async function tokenizerForManifest(
  manifest: Manifest,
  dataDir: string,
  override?: string,
): Promise<ImageTokenizer> {
  const manifestPath = join(dataDir, "manifest.json");
  const dir = override ?? tokenizerDirOf(manifest, dataDir);
  const named = override === undefined
    ? `the tokenizer '${manifest.tokenizer.path}' named by ${manifestPath}`
    : `the tokenizer ${override} (--tokenizer)`;
  if (!(await exists(join(dir, "tokenizer.json")))) {
    const how = override === undefined
      ? ` (a relative tokenizer.path is taken from the manifest's folder; give the tokenizer ` +
        `folder with --tokenizer DIR, or re-run 'checkerboard data')`
      : "";
    throw new UserError(`${named} is missing: no ${join(dir, "tokenizer.json")}${how}`);
  }
  const tokenizer = await loadTokenizer(dir);
  if (tokenizer.hash !== manifest.tokenizer.hash) {
    throw new UserError(
      `${named}: ${join(dir, "tokenizer.json")} has hash ${tokenizer.hash} but ` +
        `${manifestPath} was encoded with ${manifest.tokenizer.hash} (was the tokenizer ` +
        `refitted? re-run 'checkerboard data')`,
    );
  }
  if (tokenizer.codes !== manifest.codes) {
    throw new UserError(
      `${named}: ${join(dir, "tokenizer.json")} has ${tokenizer.codes} codes but ` +
        `${manifestPath} says ${manifest.codes}`,
    );
  }
  return tokenizer;
}

/** How a manifest written into `outDir` names the tokenizer folder `tokenizerDir`: relative to `outDir`. */
export function manifestTokenizerPath(tokenizerDir: string, outDir: string): string {
  return relativePath(resolve(outDir), resolve(tokenizerDir));
}

function relativePath(from: string, to: string): string {
  // node:path's relative, but never the empty string (the tokenizer in the shard folder itself).
  const rel = relative(from, to);
  return rel === "" ? "." : rel;
}
