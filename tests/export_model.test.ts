/** scripts/export-model.ts: a trained run as a shipped float16 model that `sample` reads. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { repoRoot, runCli, tempDir } from "./helpers.ts";
import { makeData, SMALL } from "./train_fixtures.ts";
import { readSafetensors, writeSafetensors } from "../src/util/safetensors.ts";

async function exportModel(src: string, dst: string) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", `${repoRoot}scripts/export-model.ts`, src, dst],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test("export-model writes float16 weights and the tokenizer; out-of-range weights are refused", async () => {
  await using dir = await tempDir();
  const { data } = await makeData(dir.path);
  const run = `${dir.path}/run`;
  const made = await runCli([
    "train",
    "--data",
    data,
    "--out",
    run,
    ...SMALL,
    "--batch",
    "4",
    "--iters",
    "2",
    "--eval-batches",
    "1",
  ]);
  assert.equal(made.code, 0, made.stderr);
  // The model file is accepted as well as its folder.
  const shipped = `${dir.path}/shipped`;
  const r = await exportModel(join(run, "model.safetensors"), shipped);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\(step 2\) to .*shipped: model\.safetensors .* \(float16\), tokenizer\//);
  const raw = await Deno.readFile(join(shipped, "model.safetensors"));
  const headerLength = Number(new DataView(raw.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(raw.subarray(8, 8 + headerLength)));
  assert.ok(
    Object.entries(header).every(([k, v]) =>
      k === "__metadata__" || (v as { dtype: string }).dtype === "F16"
    ),
  );
  const s = await runCli([
    "sample",
    "--model",
    shipped,
    "--count",
    "2",
    "--out",
    `${dir.path}/s`,
    "--device",
    "cpu",
  ]);
  assert.equal(s.code, 0, s.stderr);

  // Weights beyond float16's range would become Inf: refused, nothing written.
  const path = join(run, "model.safetensors");
  const model = await readSafetensors(path);
  const name = Object.keys(model.tensors)[0];
  (model.tensors[name].data as Float32Array)[0] = 1e6;
  await writeSafetensors(path, model.tensors, model.metadata);
  const bad = await exportModel(run, `${dir.path}/bad`);
  assert.equal(bad.code, 1);
  assert.match(
    bad.stderr.trim(),
    /^export-model: tensor '.*' holds 1000000 at index 0, beyond float16's range/,
  );
  assert.equal(
    await Deno.stat(`${dir.path}/bad/model.safetensors`).then(() => true, () => false),
    false,
  );
});
