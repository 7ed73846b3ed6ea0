/**
 * Exports a trained checkpoint for shipping: `deno run -A scripts/export-model.ts SRC DST`
 * writes DST/model.safetensors with float16 parameters (half the size; `sample` reads them back
 * as float32) and the same metadata, and DST/tokenizer/ (a copy of SRC's). No train state.
 * SRC is a checkpoint folder or its model.safetensors. This is how models/mnist-tiny is made
 * (scripts/train-bundled-model.sh).
 */
import { join } from "node:path";
import { UserError } from "../src/errors.ts";
import { checkpointParams, MODEL_FILE, writeModelFile } from "../src/model/checkpoint.ts";
import { CHECKPOINT_TOKENIZER_DIR, readCheckpointWithTokenizer } from "../src/model/load.ts";
import { NativeModel } from "../src/model/native_model.ts";

async function exportModel(src: string, dst: string): Promise<void> {
  const loaded = await readCheckpointWithTokenizer(src);
  const model = NativeModel.create(loaded.info.config, "cpu", 0);
  try {
    // Read through the model's parameter table: names, shapes and finite values are checked.
    const params = checkpointParams(loaded.tensors, model.params, loaded.path);
    await writeModelFile(dst, model.params, params, loaded.info, { half: true });
  } finally {
    model.dispose();
  }
  await loaded.tokenizer.save(join(dst, CHECKPOINT_TOKENIZER_DIR));
  const size = (await Deno.stat(join(dst, MODEL_FILE))).size;
  console.log(
    `exported ${loaded.path} (step ${loaded.info.step}) to ${dst}: ` +
      `${MODEL_FILE} ${(size / 1e6).toFixed(1)} MB (float16), tokenizer/`,
  );
}

if (import.meta.main) {
  const [src, dst, ...rest] = Deno.args;
  if (!src || !dst || rest.length > 0) {
    console.error("usage: deno run -A scripts/export-model.ts SRC_CHECKPOINT DST_FOLDER");
    Deno.exit(2);
  }
  try {
    await exportModel(src, dst);
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    console.error(`export-model: ${err.message}`);
    Deno.exit(1);
  }
}
