/**
 * Checkpoint files (src/model/checkpoint.ts) and model configs (src/model/config.ts), without
 * the native model: a hand-made parameter table stands in for the model's.
 */
import assert from "node:assert/strict";
import {
  checkAgainstManifest,
  type CheckpointInfo,
  checkpointParams,
  LEGACY_OPTIM_FILE,
  MODEL_FILE,
  readCheckpoint,
  readTrainStateFile,
  TRAIN_STATE_FILE,
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
import { readSafetensors, type Tensor, writeSafetensors } from "../src/util/safetensors.ts";
import { folderNames, tempDir } from "./helpers.ts";

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

const position = { microBatches: 14, epoch: 1, batch: 4 };

Deno.test("a checkpoint is one train state (parameters, moments, metadata) plus the model file", async () => {
  await using dir = await tempDir();
  const params = ramp(total, 0.01), m = ramp(total, 0.001), v = ramp(total, 1e-6).map(Math.abs);
  await writeCheckpoint(dir.path, table, { params, adamM: m, adamV: v }, info, position);
  const { info: back, tensors, path } = await readCheckpoint(dir.path);
  assert.deepEqual(back, info);
  assert.deepEqual(checkpointParams(tensors, table, path), params);
  const state = await readTrainStateFile(dir.path);
  assert.deepEqual(state.info, info);
  assert.deepEqual(state.data, position);
  const arrays = state.arrays(table);
  assert.deepEqual(arrays.params, params);
  assert.deepEqual(arrays.adamM, m);
  assert.deepEqual(arrays.adamV, v);
  // The files are plain safetensors with the parameter names and shapes.
  const raw = await readSafetensors(`${dir.path}/${MODEL_FILE}`);
  assert.deepEqual(raw.tensors["blocks.0.qkv.w"].shape, [24, 8]);
  assert.equal(JSON.parse(raw.metadata.config).width, 8);
  const rawState = await readSafetensors(`${dir.path}/${TRAIN_STATE_FILE}`);
  assert.deepEqual(Object.keys(rawState.tensors).sort(), [
    "m.blocks.0.qkv.w",
    "m.class_emb",
    "m.head.b",
    "param.blocks.0.qkv.w",
    "param.class_emb",
    "param.head.b",
    "v.blocks.0.qkv.w",
    "v.class_emb",
    "v.head.b",
  ]);
  assert.equal(rawState.metadata.step, "7");
  assert.deepEqual(JSON.parse(rawState.metadata.data), position);
  // No temporary files left behind.
  assert.deepEqual(await folderNames(dir.path), [MODEL_FILE, TRAIN_STATE_FILE]);
  // The model file itself is accepted where its folder is.
  assert.deepEqual((await readCheckpoint(`${dir.path}/${MODEL_FILE}`)).info, info);
});

Deno.test("a resume reads only the train state: a model file one checkpoint behind does not matter", async () => {
  await using dir = await tempDir();
  const params = ramp(total, 0.01);
  await writeCheckpoint(dir.path, table, { params }, { ...info, step: 5 });
  await writeCheckpoint(
    dir.path,
    table,
    { params, adamM: params, adamV: params.map(Math.abs) },
    info,
    position,
  );
  // A kill between the two renames: the train state is at step 7, the model file still at 5.
  await writeCheckpoint(dir.path, table, { params }, { ...info, step: 5 });
  const state = await readTrainStateFile(dir.path);
  assert.equal(state.info.step, 7);
  assert.equal((await readCheckpoint(dir.path)).info.step, 5);
});

/** An older run's pair: model.safetensors at `modelStep`, optim.safetensors at `optimStep`. */
async function writeLegacyPair(dir: string, modelStep: number, optimStep: number, v: Float32Array) {
  const params = ramp(total, 0.01);
  await writeCheckpoint(dir, table, { params }, { ...info, step: modelStep });
  const moments: Record<string, Tensor> = {};
  for (const p of table) {
    moments[`m.${p.name}`] = { shape: p.shape, data: params.slice(p.offset, p.offset + p.size) };
    moments[`v.${p.name}`] = { shape: p.shape, data: v.slice(p.offset, p.offset + p.size) };
  }
  await writeSafetensors(`${dir}/${LEGACY_OPTIM_FILE}`, moments, {
    format: "checkerboard-adamw",
    step: String(optimStep),
    data: JSON.stringify(position),
  });
}

Deno.test("an older run's model + optim pair resumes when its steps agree, else a clear error", async () => {
  await using dir = await tempDir();
  const v = ramp(total, 1e-6).map(Math.abs);
  await writeLegacyPair(dir.path, 7, 7, v);
  const state = await readTrainStateFile(dir.path);
  assert.equal(state.info.step, 7);
  assert.deepEqual(state.arrays(table).adamV, v);
  // A new checkpoint replaces the pair by a train state.
  const a = state.arrays(table);
  await writeCheckpoint(dir.path, table, a, state.info, state.data);
  assert.deepEqual(await folderNames(dir.path), [MODEL_FILE, TRAIN_STATE_FILE]);

  await using other = await tempDir();
  await writeLegacyPair(other.path, 8, 7, v);
  await assert.rejects(
    () => readTrainStateFile(other.path),
    (e: Error) =>
      e instanceof UserError &&
      /optim\.safetensors is at step 7 but .*model\.safetensors is at step 8/.test(e.message),
  );
  await using empty = await tempDir();
  await assert.rejects(() => readTrainStateFile(empty.path), /train-state\.safetensors: not found/);
});

Deno.test("NaN or Inf in weights or moments, and negative second moments, are refused on load", async () => {
  await using dir = await tempDir();
  const params = ramp(total, 0.01), m = ramp(total, 0.001), v = ramp(total, 1e-6).map(Math.abs);
  const badParams = params.slice();
  badParams[40] = NaN;
  await writeCheckpoint(dir.path, table, { params: badParams }, info);
  const ckpt = await readCheckpoint(dir.path);
  assert.throws(
    () => checkpointParams(ckpt.tensors, table, ckpt.path),
    (e: Error) =>
      e instanceof UserError &&
      /model\.safetensors: tensor 'blocks\.0\.qkv\.w' holds 1 non-finite value .* index 8/.test(
        e.message,
      ),
  );
  const badM = m.slice();
  badM[3] = Infinity;
  await writeCheckpoint(dir.path, table, { params, adamM: badM, adamV: v }, info, position);
  await assert.rejects(
    async () => (await readTrainStateFile(dir.path)).arrays(table),
    /train-state\.safetensors: tensor 'm\.class_emb' holds 1 non-finite value/,
  );
  const badV = v.slice();
  badV[230] = -1;
  await writeCheckpoint(dir.path, table, { params, adamM: m, adamV: badV }, info, position);
  await assert.rejects(
    async () => (await readTrainStateFile(dir.path)).arrays(table),
    /tensor 'v\.head\.b' holds a negative second moment -1 at index 6/,
  );
});

Deno.test("checkpoint metadata: every field is checked, and no message shows undefined or null", async () => {
  await using dir = await tempDir();
  const params = ramp(total, 0.01);
  const file = `${dir.path}/${MODEL_FILE}`;
  await writeCheckpoint(dir.path, table, { params }, info);
  const good = (await readSafetensors(file)).metadata;
  const { tensors } = await readSafetensors(file);
  const configWith = (edit: Record<string, unknown>) =>
    JSON.stringify({ ...JSON.parse(good.config), ...edit });
  const cases: [Record<string, unknown>, RegExp][] = [
    [
      { format: undefined },
      /not a checkerboard model checkpoint \(its metadata 'format' is missing/,
    ],
    [
      { format: "other" },
      /its metadata 'format' is the text 'other', expected 'checkerboard-model'/,
    ],
    [{ config: undefined }, /'config' is missing/],
    [{ config: "{" }, /'config' must hold valid JSON/],
    [{ config: "null" }, /metadata 'config' must be a JSON object, got an empty JSON value/],
    [
      { config: configWith({ width: "8" }) },
      /'config\.width' must be an integer, got the text '8'/,
    ],
    [
      { config: configWith({ depth: null }) },
      /'config\.depth' must be an integer, got an empty JSON value/,
    ],
    [{ config: configWith({ heads: 0 }) }, /'config\.heads' must be at least 1, got 0/],
    [{ config: configWith({ scales: 3 }) }, /'config\.scales' must be a list, got 3/],
    [{ config: configWith({ width: 6 }) }, /impossible model config: head dimension/],
    [{ step: "-1" }, /'step' must be an integer of at least 0, got -1/],
    [{ step: "1e3" }, /'step' must be an integer/],
    [{ step: "null" }, /'step' must be an integer of at least 0, got an empty JSON value/],
    [{ order: "null" }, /'order' must be one of .*, got an empty JSON value/],
    [{ format: "null" }, /its metadata 'format' is an empty JSON value/],
    [{ patch: "0" }, /'patch' must be an integer of at least 1/],
    [{ scales: "[1,2,4]" }, /'scales' must equal the config's scales 1,2/],
    [{ scales: '"x"' }, /'scales' must be a list, got the text 'x'/],
    [{ classes: '["a"]' }, /'classes' must name the config's 3 classes/],
    [{ classes: "[1,2,3]" }, /'classes\[0\]' must be a text, got 1/],
    [{ order: "zigzag" }, /'order' must be one of 'checkerboard', .*got the text 'zigzag'/],
    [{ tokenizer_hash: undefined }, /'tokenizer_hash' is missing/],
    [{ training: "[]" }, /metadata 'training' must be a JSON object, got a list of 0/],
  ];
  for (const [edit, pattern] of cases) {
    const metadata: Record<string, string> = { ...good };
    for (const [k, value] of Object.entries(edit)) {
      if (value === undefined) delete metadata[k];
      else metadata[k] = value as string;
    }
    await writeSafetensors(file, tensors, metadata);
    await assert.rejects(
      () => readCheckpoint(dir.path),
      (e: Error) => {
        assert.ok(e instanceof UserError, `${JSON.stringify(edit)}: ${e.stack}`);
        assert.match(e.message, pattern, JSON.stringify(edit));
        assert.match(e.message, /^.*model\.safetensors: /);
        assert.doesNotMatch(e.message, /undefined|(?<!JSON )\bnull\b|\[object Object\]/);
        return true;
      },
    );
  }
});

Deno.test("loading reports missing tensors, wrong shapes and truncation", async () => {
  await using dir = await tempDir();
  const params = ramp(total, 0.01);
  await writeCheckpoint(
    dir.path,
    table,
    { params, adamM: params, adamV: params.map(Math.abs) },
    info,
    position,
  );
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
  await assert.rejects(
    async () => (await readTrainStateFile(dir.path)).arrays(table.slice(0, 2)),
    /train-state\.safetensors: unexpected tensor 'param\.head\.b'/,
  );

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
  const check = (m: Partial<Manifest>, latentDim = info.config.latentDim) =>
    checkAgainstManifest(
      info,
      { ...manifest, ...m } as Manifest,
      latentDim,
      "ckpt/model.safetensors",
      "data/manifest.json",
    );
  check({});
  assert.throws(() => check({ codes: 32 }), /codebook size 16 vs 32/);
  assert.throws(() => check({ scales: [1, 2, 4] }), /scales 1,2 vs 1,2,4/);
  assert.throws(() => check({}, 48), /latent dimension 12 vs the tokenizer's 48/);
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
