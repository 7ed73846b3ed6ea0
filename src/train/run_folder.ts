/**
 * The folder of a training run (--out): what it must be before a run starts, and what a run
 * puts there before its first step.
 */
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { fileSystemError } from "../util/files.ts";
import type { ImageTokenizer } from "../tokenizer/tokenizer.ts";
import { hasCheckpoint, hasTrainState, MODEL_FILE, TRAIN_STATE_FILE } from "../model/checkpoint.ts";
import { CHECKPOINT_TOKENIZER_DIR } from "../model/load.ts";

/** --out must be a folder (or not exist yet); a fresh run must not overwrite a checkpoint. */
export async function checkRunFolder(outDir: string, resume: boolean): Promise<void> {
  let stat: Deno.FileInfo | undefined;
  try {
    stat = await Deno.stat(outDir);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) {
      throw fileSystemError(err, `cannot use the output folder ${outDir}`);
    }
  }
  if (stat && !stat.isDirectory) {
    throw new UserError(`--out ${outDir} is a file, not a folder (give a checkpoint folder)`);
  }
  if (resume) {
    if (!stat || !(await hasTrainState(outDir))) {
      throw new UserError(
        `--resume: ${join(outDir, TRAIN_STATE_FILE)} not found (nothing to resume)`,
      );
    }
  } else if (stat && ((await hasCheckpoint(outDir)) || (await hasTrainState(outDir)))) {
    const file = (await hasCheckpoint(outDir)) ? MODEL_FILE : TRAIN_STATE_FILE;
    throw new UserError(
      `${join(outDir, file)} already exists (use --resume to continue it, or another --out)`,
    );
  }
}

/**
 * Temporary files of a run killed while writing (NAME.tmp-PID-XXXXXX beside the file): never
 * read, but each as large as the file, so a resume removes them.
 */
async function removeStaleTemporaries(outDir: string): Promise<void> {
  const ours = /^(model\.safetensors|train-state\.safetensors|metrics\.jsonl)\.tmp-(\d+)-/;
  for await (const entry of Deno.readDir(outDir)) {
    const m = entry.name.match(ours);
    if (entry.isFile && m && Number(m[2]) !== Deno.pid) {
      await Deno.remove(join(outDir, entry.name)).catch(() => {});
    }
  }
}

/**
 * Makes the run folder and puts the tokenizer there (the checkpoint carries the tokenizer its
 * codes come from, so `sample` needs nothing else); a resume also clears a killed run's
 * temporary files.
 */
export async function prepareRunFolder(
  outDir: string,
  tokenizer: ImageTokenizer,
  resume: boolean,
): Promise<void> {
  try {
    await Deno.mkdir(outDir, { recursive: true });
  } catch (err) {
    throw fileSystemError(err, `cannot make the output folder ${outDir}`);
  }
  await tokenizer.save(join(outDir, CHECKPOINT_TOKENIZER_DIR));
  if (resume) await removeStaleTemporaries(outDir);
}
