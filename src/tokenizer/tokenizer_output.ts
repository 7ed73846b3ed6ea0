/**
 * Writing a tokenizer folder all or nothing: its files are written into a temporary sibling
 * folder that is renamed to the final name when complete, so a crash or a full disk never leaves
 * a half-written tokenizer under the name a later command would load.
 */
import { resolve } from "node:path";
import { UserError } from "../errors.ts";
import { exists, fileSystemError, outFolderExists } from "../util/files.ts";
import type { ImageTokenizer } from "./tokenizer.ts";

/**
 * Checks, before any long work, that `out` may become a tokenizer folder: absent, an empty
 * folder, or (with `force`) a tokenizer folder to replace. Never a file or another folder.
 */
export async function checkTokenizerOutput(out: string, force: boolean): Promise<void> {
  if (out.trim() === "") throw new UserError("--out needs a folder name, got ''");
  if (!(await outFolderExists(out))) return;
  const entries: string[] = [];
  try {
    for await (const e of Deno.readDir(out)) entries.push(e.name);
  } catch (err) {
    throw fileSystemError(err, `--out ${out}: cannot read the folder`);
  }
  if (entries.length === 0) return;
  if (!entries.includes("tokenizer.json")) {
    throw new UserError(
      `--out ${out} is a folder that holds no tokenizer.json; only a tokenizer folder is ` +
        `replaced (remove it or choose another --out)`,
    );
  }
  if (!force) {
    throw new UserError(`--out ${out}: a tokenizer is already there (use --force to replace it)`);
  }
}

/** Writes `tokenizer` into `out` through a temporary sibling folder (see checkTokenizerOutput). */
export async function writeTokenizerFolder(
  tokenizer: ImageTokenizer,
  out: string,
  force: boolean,
): Promise<void> {
  await checkTokenizerOutput(out, force);
  // Absolute, so that an --out of "." or "sub/.." still gets a sibling temporary folder.
  const final = resolve(out);
  const partial = `${final}.partial-${Deno.pid}`;
  try {
    await Deno.remove(partial, { recursive: true }).catch(() => {});
    await tokenizer.save(partial);
    await checkTokenizerOutput(out, force); // again: it may have appeared meanwhile
    if (await exists(final)) await Deno.remove(final, { recursive: true });
    await Deno.rename(partial, final);
  } catch (err) {
    await Deno.remove(partial, { recursive: true }).catch(() => {});
    throw fileSystemError(err, `cannot write the tokenizer into ${out}`);
  }
}
