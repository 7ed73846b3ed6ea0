/**
 * Exports a trained checkpoint for shipping: `deno run -A scripts/export-model.ts SRC DST`
 * writes DST/model.safetensors with float16 parameters (half the size; `sample` reads them back
 * as float32) and the same metadata, and DST/tokenizer/ (a copy of SRC's). No optimizer state.
 * This is how models/mnist-tiny is made (scripts/train-bundled-model.sh).
 */
import { join } from "node:path";
import { checkpointParams, writeCheckpoint } from "../src/model/checkpoint.ts";
import { CHECKPOINT_TOKENIZER_DIR, readCheckpointWithTokenizer } from "../src/model/load.ts";
import { NativeModel } from "../src/model/native_model.ts";

const [src, dst] = Deno.args;
if (!src || !dst) {
  console.error("usage: deno run -A scripts/export-model.ts SRC_CHECKPOINT DST_FOLDER");
  Deno.exit(2);
}
const loaded = await readCheckpointWithTokenizer(src);
const model = NativeModel.create(loaded.info.config, "cpu", 0);
const params = checkpointParams(loaded.tensors, model.params, loaded.path);
await writeCheckpoint(dst, model.params, { params }, loaded.info, undefined, { half: true });
await loaded.tokenizer.save(join(dst, CHECKPOINT_TOKENIZER_DIR));
model.dispose();
const size = (await Deno.stat(join(dst, "model.safetensors"))).size;
console.log(
  `exported ${loaded.path} (step ${loaded.info.step}) to ${dst}: ` +
    `model.safetensors ${(size / 1e6).toFixed(1)} MB (float16), tokenizer/`,
);
