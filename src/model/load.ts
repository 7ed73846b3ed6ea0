/**
 * Loading a checkpoint for sampling: the model with its parameters, and the tokenizer whose
 * codes it was trained on (by default the copy in CKPT/tokenizer/ that `train` writes), checked
 * to be that tokenizer.
 */
import { dirname, join } from "node:path";
import { UserError } from "../errors.ts";
import { exists } from "../util/files.ts";
import { loadTokenizer } from "../tokenizer/load.ts";
import type { ImageTokenizer } from "../tokenizer/tokenizer.ts";
import { type CheckpointInfo, checkpointParams, readCheckpoint } from "./checkpoint.ts";
import type { Backend } from "../engine.ts";
import { NativeModel, type Precision } from "./native_model.ts";

/** The folder, inside a checkpoint, of the tokenizer the model was trained on. */
export const CHECKPOINT_TOKENIZER_DIR = "tokenizer";

export interface LoadedCheckpoint {
  info: CheckpointInfo;
  /** The model.safetensors file read. */
  path: string;
  tokenizer: ImageTokenizer;
  tokenizerDir: string;
}

/** True when `path` is a folder (false when missing or a file). */
async function isFolder(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isDirectory;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

export type CheckpointWithTensors = LoadedCheckpoint & {
  tensors: Awaited<ReturnType<typeof readCheckpoint>>["tensors"];
};

/**
 * Reads the checkpoint of `path` (a folder made by `train`, or the model.safetensors file in
 * it) and its tokenizer (`tokenizerDir`, default the tokenizer/ folder beside the model file),
 * and checks that they belong together: same tokenizer hash, codebook size and latent length.
 */
export async function readCheckpointWithTokenizer(
  path: string,
  tokenizerDir?: string,
): Promise<CheckpointWithTensors> {
  const ckpt = await readCheckpoint(path);
  const dir = dirname(ckpt.path);
  const tokDir = tokenizerDir ?? join(dir, CHECKPOINT_TOKENIZER_DIR);
  if (!(await isFolder(tokDir)) || !(await exists(join(tokDir, "tokenizer.json")))) {
    throw new UserError(
      tokenizerDir === undefined
        ? `${dir} has no ${CHECKPOINT_TOKENIZER_DIR}/ folder (tokenizer.json) beside ` +
          `${ckpt.path}; give --tokenizer DIR`
        : `--tokenizer ${tokDir}: not a tokenizer folder (no tokenizer.json in it)`,
    );
  }
  const tokenizer = await loadTokenizer(tokDir);
  const info = ckpt.info;
  if (tokenizer.hash !== info.tokenizerHash) {
    throw new UserError(
      `checkpoint from another tokenizer: ${ckpt.path} was trained with tokenizer hash ` +
        `${info.tokenizerHash} but ${tokDir} has hash ${tokenizer.hash}`,
    );
  }
  if (tokenizer.codes !== info.config.vocab || tokenizer.dim !== info.config.latentDim) {
    throw new UserError(
      `${tokDir} has ${tokenizer.codes} codes of ${tokenizer.dim} values but ${ckpt.path} ` +
        `needs ${info.config.vocab} of ${info.config.latentDim}`,
    );
  }
  return { info, path: ckpt.path, tensors: ckpt.tensors, tokenizer, tokenizerDir: tokDir };
}

/** A model on `device` with the parameters of a checkpoint read by readCheckpointWithTokenizer. */
export function modelFromCheckpoint(
  loaded: Pick<CheckpointWithTensors, "info" | "tensors" | "path">,
  device: Backend,
  precision?: Precision,
): NativeModel {
  const model = NativeModel.create(loaded.info.config, device, 0, precision);
  try {
    model.setState("params", checkpointParams(loaded.tensors, model.params, loaded.path));
  } catch (err) {
    model.dispose();
    throw err;
  }
  return model;
}

/** The checkpoint of `path` (folder or model file) as a ready model on `device`, with its tokenizer. */
export async function loadSamplingModel(
  path: string,
  tokenizerDir: string | undefined,
  device: Backend,
  precision?: Precision,
): Promise<LoadedCheckpoint & { model: NativeModel }> {
  const loaded = await readCheckpointWithTokenizer(path, tokenizerDir);
  const { tensors: _tensors, ...rest } = loaded;
  return { ...rest, model: modelFromCheckpoint(loaded, device, precision) };
}
