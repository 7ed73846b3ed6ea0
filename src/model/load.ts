/**
 * Loading a checkpoint for sampling: the model with its parameters, and the tokenizer whose
 * codes it was trained on (by default the copy in CKPT/tokenizer/ that `train` writes), checked
 * to be that tokenizer.
 */
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { exists } from "../util/files.ts";
import { PatchTokenizer } from "../tokenizer/patch_vq.ts";
import { type CheckpointInfo, checkpointParams, readCheckpoint } from "./checkpoint.ts";
import type { Backend } from "../engine.ts";
import { NativeModel } from "./native_model.ts";

/** The folder, inside a checkpoint, of the tokenizer the model was trained on. */
export const CHECKPOINT_TOKENIZER_DIR = "tokenizer";

export interface LoadedCheckpoint {
  info: CheckpointInfo;
  /** The model.safetensors file read. */
  path: string;
  tokenizer: PatchTokenizer;
  tokenizerDir: string;
}

/**
 * Reads `dir`'s checkpoint and its tokenizer (`tokenizerDir`, default DIR/tokenizer) and checks
 * that they belong together: same tokenizer hash, codebook size and latent length.
 */
export type CheckpointWithTensors = LoadedCheckpoint & {
  tensors: Awaited<ReturnType<typeof readCheckpoint>>["tensors"];
};

export async function readCheckpointWithTokenizer(
  dir: string,
  tokenizerDir?: string,
): Promise<CheckpointWithTensors> {
  const ckpt = await readCheckpoint(dir);
  const tokDir = tokenizerDir ?? join(dir, CHECKPOINT_TOKENIZER_DIR);
  if (!(await exists(join(tokDir, "tokenizer.json")))) {
    throw new UserError(
      tokenizerDir === undefined
        ? `${dir} has no ${CHECKPOINT_TOKENIZER_DIR}/ folder (tokenizer.json); give --tokenizer DIR`
        : `--tokenizer ${tokDir}: no tokenizer.json there (is it a tokenizer folder?)`,
    );
  }
  const tokenizer = await PatchTokenizer.load(tokDir);
  const info = ckpt.info;
  if (tokenizer.config.hash !== info.tokenizerHash) {
    throw new UserError(
      `checkpoint from another tokenizer: ${ckpt.path} was trained with tokenizer hash ` +
        `${info.tokenizerHash} but ${tokDir} has hash ${tokenizer.config.hash}`,
    );
  }
  if (tokenizer.config.codes !== info.config.vocab || tokenizer.dim !== info.config.latentDim) {
    throw new UserError(
      `${tokDir} has ${tokenizer.config.codes} codes of ${tokenizer.dim} values but ${ckpt.path} ` +
        `needs ${info.config.vocab} of ${info.config.latentDim}`,
    );
  }
  return { info, path: ckpt.path, tensors: ckpt.tensors, tokenizer, tokenizerDir: tokDir };
}

/** A model on `device` with the parameters of a checkpoint read by readCheckpointWithTokenizer. */
export function modelFromCheckpoint(
  loaded: Pick<CheckpointWithTensors, "info" | "tensors" | "path">,
  device: Backend,
): NativeModel {
  const model = NativeModel.create(loaded.info.config, device, 0);
  try {
    model.setState("params", checkpointParams(loaded.tensors, model.params, loaded.path));
  } catch (err) {
    model.dispose();
    throw err;
  }
  return model;
}

/** The checkpoint of `dir` as a ready model on `device`, with its tokenizer. */
export async function loadSamplingModel(
  dir: string,
  tokenizerDir: string | undefined,
  device: Backend,
): Promise<LoadedCheckpoint & { model: NativeModel }> {
  const loaded = await readCheckpointWithTokenizer(dir, tokenizerDir);
  const { tensors: _tensors, ...rest } = loaded;
  return { ...rest, model: modelFromCheckpoint(loaded, device) };
}
