/**
 * Checkpoint files (src/model/checkpoint.ts) and model configs (src/model/config.ts), without
 * the native model: a hand-made parameter table stands in for the model's.
 */
import assert from "node:assert/strict";
import {
  checkAgainstManifest,
  type CheckpointInfo,
  checkpointParams,
  MODEL_FILE,
  OPTIM_FILE,
  readCheckpoint,
  readOptimState,
  writeCheckpoint,
} from "../src/model/checkpoint.ts";
import {
  buildModelConfig,
  matmulParamsPerSlot,
  meanVisibleSlots,
  modelFlopsPerToken,
  parseRopeMix,
  validateModelConfig,
} from "../src/model/config.ts";
import type { ParamInfo } from "../src/model/native_model.ts";
import type { Manifest } from "../src/data/shards.ts";
import { UsageError, UserError } from "../src/errors.ts";
import { readSafetensors, writeSafetensors } from "../src/util/safetensors.ts";
import { tempDir } from "./helpers.ts";

const config = buildModelConfig({
  preset: "tiny",
  depth: 2,
  width: 8,
  heads: 2,
  vocab: 16,
  latentDim: 12,
  classes: 3,
  scales: [1, 2],
});

const table: ParamInfo[] = [
  { name: "class_emb", shape: [4, 8], offset: 0, size: 32, decay: false, init: "normal" },
  { name: "blocks.0.qkv.w", shape: [24, 8], offset: 32, size: 192, decay: true, init: "normal" },
  { name: "head.b", shape: [16], offset: 224, size: 16, decay: false, init: "zeros" },
];
const total = 240;

const info: CheckpointInfo = {
  config,
  step: 7,
  tokenizerHash: "abc123",
  scales: [1, 2],
  patch: 2,
  order: "checkerboard",
  classes: ["a", "b", "c"],
  training: { lr: 1e-4, batch: 4 },
};

const manifest = {
  codes: 16,
  scales: [1, 2],
  patch: 2,
  classes: ["a", "b", "c"],
  tokenizer: { hash: "abc123", patch: 2, codes: 16, path: "tok" },
} as unknown as Manifest;

function ramp(n: number, scale: number) {
  return Float32Array.from({ length: n }, (_, i) => (i - n / 2) * scale);
}

Deno.test("a checkpoint round-trips parameters, moments and metadata", async () => {
  await using dir = await tempDir();
  const params = ramp(total, 0.01), m = ramp(total, 0.001), v = ramp(total, 1e-6).map(Math.abs);
  await writeCheckpoint(dir.path, table, { params, adamM: m, adamV: v }, info, {
    step: 7,
    data: { microBatches: 14, epoch: 1, batch: 4 },
  });
  const { info: back, tensors, path } = await readCheckpoint(dir.path);
  assert.deepEqual(back, info);
  assert.deepEqual(checkpointParams(tensors, table, path), params);
  const optim = await readOptimState(dir.path, table, 7);
  assert.deepEqual(optim.adamM, m);
  assert.deepEqual(optim.adamV, v);
  assert.deepEqual(optim.info.data, { microBatches: 14, epoch: 1, batch: 4 });
  // The files are plain safetensors with the parameter names and shapes.
  const raw = await readSafetensors(`${dir.path}/${MODEL_FILE}`);
  assert.deepEqual(raw.tensors["blocks.0.qkv.w"].shape, [24, 8]);
  assert.equal(JSON.parse(raw.metadata.config).width, 8);
  const rawOptim = await readSafetensors(`${dir.path}/${OPTIM_FILE}`);
  assert.deepEqual(Object.keys(rawOptim.tensors).sort(), [
    "m.blocks.0.qkv.w",
    "m.class_emb",
    "m.head.b",
    "v.blocks.0.qkv.w",
    "v.class_emb",
    "v.head.b",
  ]);
  // No temporary files left behind.
  const names = [];
  for await (const e of Deno.readDir(dir.path)) names.push(e.name);
  assert.deepEqual(names.sort(), [MODEL_FILE, OPTIM_FILE]);
});

Deno.test("loading reports missing tensors, wrong shapes, step mismatch and truncation", async () => {
  await using dir = await tempDir();
  const params = ramp(total, 0.01);
  await writeCheckpoint(dir.path, table, { params, adamM: params, adamV: params }, info, {
    step: 7,
    data: { microBatches: 7, epoch: 0, batch: 7 },
  });
  const { tensors, path } = await readCheckpoint(dir.path);
  const bigger = table.map((p) => p.name === "head.b" ? { ...p, shape: [17], size: 17 } : p);
  assert.throws(
    () => checkpointParams(tensors, bigger, path),
    (e: Error) =>
      e instanceof UserError && /head\.b' has shape \[16\].*needs \[17\]/.test(e.message),
  );
  const more = [...table, { ...table[2], name: "head.w", offset: 240 }];
  assert.throws(() => checkpointParams(tensors, more, path), /missing tensor 'head\.w'/);
  assert.throws(() => checkpointParams(tensors, table.slice(0, 2), path), /unexpected tensor/);
  await assert.rejects(() => readOptimState(dir.path, table, 8), /at step 7 but .* step 8/);

  // Truncated file.
  const bytes = await Deno.readFile(`${dir.path}/${MODEL_FILE}`);
  await Deno.writeFile(`${dir.path}/${MODEL_FILE}`, bytes.subarray(0, bytes.length - 100));
  await assert.rejects(
    () => readCheckpoint(dir.path),
    (e: Error) =>
      e instanceof UserError && e.message.includes(MODEL_FILE) && /truncated/.test(e.message),
  );
  // Garbage.
  await Deno.writeFile(`${dir.path}/${MODEL_FILE}`, new Uint8Array(5));
  await assert.rejects(() => readCheckpoint(dir.path), /not a valid safetensors file/);
  // Not a checkpoint.
  await writeSafetensors(`${dir.path}/${MODEL_FILE}`, {}, { format: "other" });
  await assert.rejects(() => readCheckpoint(dir.path), /not a checkerboard model checkpoint/);
  // Missing folder.
  await assert.rejects(() => readCheckpoint(`${dir.path}/nope`), /not found/);
});

Deno.test("a checkpoint is checked against the data manifest", () => {
  const check = (m: Partial<Manifest>) =>
    checkAgainstManifest(
      info,
      { ...manifest, ...m } as Manifest,
      "ckpt/model.safetensors",
      "data/manifest.json",
    );
  check({});
  assert.throws(() => check({ codes: 32 }), /codebook size 16 vs 32/);
  assert.throws(() => check({ scales: [1, 2, 4] }), /scales 1,2 vs 1,2,4/);
  assert.throws(() => check({ patch: 4 }), /latent dimension 12 vs 48/);
  assert.throws(() => check({ classes: ["a"] }), /3 classes vs 1/);
  assert.throws(
    () => check({ tokenizer: { ...manifest.tokenizer, hash: "zzz" } }),
    /ckpt\/model\.safetensors does not fit data\/manifest\.json: tokenizer/,
  );
});

Deno.test("model configs: presets, overrides and validation", () => {
  const base = { vocab: 512, latentDim: 48, classes: 10, scales: [1, 2, 4, 8] };
  const tiny = buildModelConfig({ preset: "tiny", ...base });
  assert.deepEqual([tiny.depth, tiny.width, tiny.heads, tiny.mlpRatio], [4, 256, 4, 4]);
  const S = buildModelConfig({ preset: "S", ...base, ropeMix: "all" });
  assert.deepEqual([S.depth, S.width, S.heads, S.ropeMixLayers], [12, 512, 16, 12]);
  const L = buildModelConfig({ preset: "L", ...base, ropeMix: "2" });
  assert.deepEqual([L.depth, L.width, L.heads, L.ropeMixLayers], [20, 1024, 16, 2]);
  // Head dim 4 is allowed (no minimum of 16).
  assert.equal(buildModelConfig({ preset: "tiny", ...base, width: 8, heads: 2 }).width, 8);
  assert.throws(
    () => buildModelConfig({ preset: "tiny", ...base, width: 30, heads: 4 }),
    /not divisible by heads/,
  );
  assert.throws(
    () => buildModelConfig({ preset: "tiny", ...base, width: 30, heads: 2 }),
    (e: Error) => e instanceof UsageError && /head dimension .* 15 must be even/.test(e.message),
  );
  assert.throws(() => buildModelConfig({ preset: "tiny", ...base, vocab: 70000 }), /exceeds 65536/);
  assert.throws(
    () => buildModelConfig({ preset: "tiny", ...base, scales: [1, 4, 2] }),
    /strictly increasing/,
  );
  assert.throws(
    () => buildModelConfig({ preset: "tiny", ...base, depth: 0 }),
    /depth must be a positive/,
  );
  assert.equal(parseRopeMix("none", 4), 0);
  assert.throws(() => parseRopeMix("5", 4), /exceeds the model depth/);
  assert.throws(() => parseRopeMix("some", 4), /none, all or a layer count/);
  assert.throws(() => validateModelConfig({ ...tiny, ropeMixLayers: -1 }), UsageError);
});

Deno.test("FLOPs per token follow the documented formula", () => {
  const c = buildModelConfig({
    preset: "tiny",
    depth: 2,
    width: 16,
    heads: 2,
    vocab: 10,
    latentDim: 3,
    classes: 2,
    scales: [1, 2],
  });
  // latent MLP 2 (3*16 + 256) + in_proj 4*256 + 2 layers * 12 * 256 + head 16*10
  const params = 2 * (48 + 256) + 1024 + 2 * 12 * 256 + 160;
  assert.equal(matmulParamsPerSlot(c), params);
  assert.equal(modelFlopsPerToken(c, 3), 6 * params + 2 * 12 * 3 * 16);
  assert.equal(meanVisibleSlots(Int32Array.from([1, 3, 3, 5, 5, 5])), 22 / 6);
});
