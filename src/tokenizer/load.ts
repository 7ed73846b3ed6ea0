/**
 * Loading a tokenizer folder of either kind (tokenizer.ts): tokenizer.json's `format` says which
 * loader reads the folder, so every command takes `--tokenizer DIR` of either kind.
 */
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { readJsonStrict } from "../util/json.ts";
import { PatchTokenizer, TOKENIZER_FORMAT, tokenizerFolder } from "./patch_vq.ts";
import { VQ_TOKENIZER_FORMAT, VqTokenizer } from "./vq_tokenizer.ts";
import type { ImageTokenizer } from "./tokenizer.ts";

/**
 * The tokenizer of folder `path` (or of the tokenizer.json / tokenizer.safetensors file given
 * for it), checked by its kind's loader.
 */
export async function loadTokenizer(path: string): Promise<ImageTokenizer> {
  const dir = await tokenizerFolder(path);
  const jsonPath = join(dir, "tokenizer.json");
  const value = await readJsonStrict(
    jsonPath,
    `is ${dir} a tokenizer folder from 'tokenizer fit' or 'tokenizer import'?`,
  );
  const format = typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>).format
    : undefined;
  if (format === TOKENIZER_FORMAT) return await PatchTokenizer.load(dir);
  if (format === VQ_TOKENIZER_FORMAT) return await VqTokenizer.load(dir);
  throw new UserError(
    `${jsonPath}: 'format' must be '${TOKENIZER_FORMAT}' (tokenizer fit) or ` +
      `'${VQ_TOKENIZER_FORMAT}' (tokenizer import), not ${JSON.stringify(format) ?? "missing"} ` +
      `(is this a tokenizer folder?)`,
  );
}
