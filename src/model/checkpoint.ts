/**
 * Checkpoints (DESIGN.md "Files"): a folder with
 * - `train-state.safetensors`: everything a resume needs, in ONE file: the parameters
 *   `param.<name>`, the AdamW moments `m.<name>` and `v.<name>`; metadata: the model metadata
 *   (below, with format `checkerboard-train-state`) plus the data position `data`;
 * - `model.safetensors`: the parameters by table name (F32, or F16 for a shipped model), for
 *   `sample` and `eval`; `__metadata__` holds JSON strings: format, config, step, tokenizer
 *   hash, scales, patch, order, classes, training.
 * Each file is written atomically (temporary name, then rename over the old one, so the previous
 * checkpoint stays whole until the new one is), the train state first: a crash between the two
 * renames leaves a model file one checkpoint behind, never a resume state that disagrees with
 * itself. A resume reads only the train state.
 *
 * Older runs have `optim.safetensors` (moments `m.`/`v.`, metadata step and data) beside
 * model.safetensors instead of a train state; they resume when the two agree on the step.
 *
 * Loading checks every metadata field (type and range), every tensor against the parameter
 * table, and every value for NaN/Inf, and turns each failure into a UserError naming the file.
 */
import { join } from "node:path";
import { UserError } from "../errors.ts";
import type { Manifest } from "../data/shards.ts";
import { readSafetensors, type Tensor, toFloat16, writeSafetensors } from "../util/safetensors.ts";
import { exists } from "../util/files.ts";
import { describeValue, Fields } from "../util/schema.ts";
import { checkFinite } from "../util/finite.ts";
import { ORDER_NAMES, type OrderName } from "../plan/orders.ts";
import type { ModelConfig, ParamInfo } from "./native_model.ts";
import { validateModelConfig } from "./config.ts";

export const MODEL_FILE = "model.safetensors";
export const TRAIN_STATE_FILE = "train-state.safetensors";
/** The optimizer file of runs made before the train state existed (read for resuming only). */
export const LEGACY_OPTIM_FILE = "optim.safetensors";
export const CHECKPOINT_FORMAT = "checkerboard-model";
export const TRAIN_STATE_FORMAT = "checkerboard-train-state";
export const LEGACY_OPTIM_FORMAT = "checkerboard-adamw";

/** Tensor name prefixes of the train state. */
const PARAM_PREFIX = "param.";
const M_PREFIX = "m.";
const V_PREFIX = "v.";

/** What a checkpoint says about itself (model.safetensors metadata). */
export interface CheckpointInfo {
  config: ModelConfig;
  /** Optimizer steps done. */
  step: number;
  /** The hash of the tokenizer whose codes the model was trained on. */
  tokenizerHash: string;
  scales: number[];
  patch: number;
  order: OrderName;
  classes: string[];
  /** The training options (for resuming and for the record). */
  training: Record<string, unknown>;
}

/** Where the training data stood. */
export interface DataPosition {
  /** Micro-batches consumed since the start of training. */
  microBatches: number;
  epoch: number;
  /** Batch index within `epoch` of the next micro-batch. */
  batch: number;
}

/** Flat buffers laid out by the parameter table. */
export interface ModelState {
  params: Float32Array;
  adamM?: Float32Array;
  adamV?: Float32Array;
}

/** Everything a resume needs, read from one train state (or a legacy pair that agrees). */
export interface TrainState {
  info: CheckpointInfo;
  data: DataPosition;
  params: Float32Array;
  adamM: Float32Array;
  adamV: Float32Array;
  /** The file(s) it was read from, for messages. */
  path: string;
}

function tableSize(table: readonly ParamInfo[]): number {
  return table.reduce((a, p) => Math.max(a, p.offset + p.size), 0);
}

function tensorsFromFlat(
  table: readonly ParamInfo[],
  flat: Float32Array,
  prefix = "",
  half = false,
): Record<string, Tensor> {
  const total = tableSize(table);
  if (flat.length !== total) {
    throw new RangeError(`flat buffer has ${flat.length} values, the table needs ${total}`);
  }
  const out: Record<string, Tensor> = {};
  for (const p of table) {
    const data = flat.subarray(p.offset, p.offset + p.size);
    if (half) checkHalfRange(data, prefix + p.name);
    out[prefix + p.name] = half
      ? { shape: [...p.shape], data: toFloat16(data), dtype: "F16" }
      : { shape: [...p.shape], data };
  }
  return out;
}

/** The largest finite float16. */
const HALF_MAX = 65504;

/** A value beyond float16's range would be stored as Inf. */
function checkHalfRange(values: Float32Array, name: string) {
  for (let i = 0; i < values.length; i++) {
    if (!(Math.abs(values[i]) <= HALF_MAX)) {
      throw new UserError(
        `tensor '${name}' holds ${values[i]} at index ${i}, beyond float16's range ` +
          `(+-${HALF_MAX}): it cannot be stored as float16`,
      );
    }
  }
}

/** The model metadata (every value a string, as safetensors requires). */
function modelMetadata(info: CheckpointInfo, format: string): Record<string, string> {
  return {
    format,
    config: JSON.stringify(info.config),
    step: String(info.step),
    tokenizer_hash: info.tokenizerHash,
    scales: JSON.stringify(info.scales),
    patch: String(info.patch),
    order: info.order,
    classes: JSON.stringify(info.classes),
    training: JSON.stringify(info.training),
  };
}

/** Writes DIR/model.safetensors (`half`: float16 parameters, half the size, for shipping). */
export async function writeModelFile(
  dir: string,
  table: readonly ParamInfo[],
  params: Float32Array,
  info: CheckpointInfo,
  { half = false } = {},
): Promise<void> {
  await writeSafetensors(
    join(dir, MODEL_FILE),
    tensorsFromFlat(table, params, "", half),
    modelMetadata(info, CHECKPOINT_FORMAT),
  );
}

/** Writes DIR/train-state.safetensors: parameters, moments, model metadata and data position. */
export async function writeTrainState(
  dir: string,
  table: readonly ParamInfo[],
  state: Required<ModelState>,
  info: CheckpointInfo,
  data: DataPosition,
): Promise<void> {
  await writeSafetensors(
    join(dir, TRAIN_STATE_FILE),
    {
      ...tensorsFromFlat(table, state.params, PARAM_PREFIX),
      ...tensorsFromFlat(table, state.adamM, M_PREFIX),
      ...tensorsFromFlat(table, state.adamV, V_PREFIX),
    },
    { ...modelMetadata(info, TRAIN_STATE_FORMAT), data: JSON.stringify(data) },
  );
}

/**
 * Writes a checkpoint into `dir`. With moments and a data position: the train state first,
 * then model.safetensors from the same state (and a legacy optim.safetensors, now stale, is
 * removed). Without: model.safetensors only (an exported or test model).
 */
export async function writeCheckpoint(
  dir: string,
  table: readonly ParamInfo[],
  state: ModelState,
  info: CheckpointInfo,
  data?: DataPosition,
  { half = false } = {},
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  if (data && state.adamM && state.adamV) {
    await writeTrainState(
      dir,
      table,
      { params: state.params, adamM: state.adamM, adamV: state.adamV },
      info,
      data,
    );
    await Deno.remove(join(dir, LEGACY_OPTIM_FILE)).catch(() => {});
  }
  await writeModelFile(dir, table, state.params, info, { half });
}

// ---- Reading metadata ------------------------------------------------------------------------

/** A metadata value that holds JSON: parsed, or a UserError naming the key. */
function jsonValue(meta: Fields, key: string): unknown {
  const text = meta.string(key);
  try {
    return JSON.parse(text);
  } catch {
    return meta.fail(key, "must hold valid JSON", text);
  }
}

/**
 * A metadata text as messages show it: the JSON value it spells when it spells one that is not
 * a text ("null" shows as an empty JSON value, "[]" as a list), else the text itself.
 */
function shownText(text: string): unknown {
  try {
    const value = JSON.parse(text);
    return typeof value === "string" ? text : value;
  } catch {
    return text;
  }
}

/** A metadata value that holds a non-negative integer written as decimal text. */
function countValue(meta: Fields, key: string, min = 0): number {
  const text = meta.string(key);
  const n = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(n) || n < min) {
    meta.fail(key, `must be an integer of at least ${min}`, shownText(text));
  }
  return n;
}

/** A metadata value that is one of `choices`. */
function choiceValue<T extends string>(meta: Fields, key: string, choices: readonly T[]): T {
  const text = meta.string(key);
  if (!(choices as readonly string[]).includes(text)) {
    meta.fail(key, `must be one of ${choices.map((c) => `'${c}'`).join(", ")}`, shownText(text));
  }
  return text as T;
}

/** The model config from its metadata JSON, every field checked, then its cross-field rules. */
function readModelConfig(value: unknown, file: string): ModelConfig {
  const c = Fields.of(value, file, "metadata 'config'", "config.");
  const config: ModelConfig = {
    vocab: c.int("vocab", { min: 1 }),
    latentDim: c.int("latentDim", { min: 1 }),
    classes: c.int("classes", { min: 1 }),
    depth: c.int("depth", { min: 1 }),
    width: c.int("width", { min: 1 }),
    heads: c.int("heads", { min: 1 }),
    mlpRatio: c.int("mlpRatio", { min: 1 }),
    scales: c.intList("scales", { min: 1 }, { minLength: 1 }),
    ropeMixLayers: c.int("ropeMixLayers", { min: 0 }),
  };
  try {
    validateModelConfig(config);
  } catch (err) {
    throw new UserError(`${file}: impossible model config: ${(err as Error).message}`);
  }
  return config;
}

/** Checkpoint metadata of a file of format `format`, every field checked. */
function infoFromMetadata(
  metadata: unknown,
  file: string,
  format: string,
  what: string,
): CheckpointInfo {
  const meta = Fields.of(metadata, file, "the safetensors metadata");
  if (meta.raw("format") !== format) {
    const found = meta.raw("format");
    throw new UserError(
      `${file}: not a ${what} (its metadata 'format' is ${
        typeof found === "string" ? describeValue(shownText(found)) : "missing"
      }, expected '${format}')`,
    );
  }
  const config = readModelConfig(jsonValue(meta, "config"), file);
  const scales = Fields.of({ scales: jsonValue(meta, "scales") }, file)
    .intList("scales", { min: 1 }, { minLength: 1 });
  const classes = Fields.of({ classes: jsonValue(meta, "classes") }, file)
    .stringList("classes", { minLength: 1 });
  if (scales.join(",") !== config.scales.join(",")) {
    meta.fail("scales", `must equal the config's scales ${config.scales.join(",")}`, scales);
  }
  if (classes.length !== config.classes) {
    meta.fail("classes", `must name the config's ${config.classes} classes`, classes);
  }
  const training = jsonValue(meta, "training");
  Fields.of(training, file, "metadata 'training'");
  return {
    config,
    step: countValue(meta, "step"),
    tokenizerHash: meta.string("tokenizer_hash"),
    scales,
    patch: countValue(meta, "patch", 1),
    order: choiceValue(meta, "order", ORDER_NAMES),
    classes,
    training: training as Record<string, unknown>,
  };
}

function dataFromMetadata(metadata: unknown, file: string): DataPosition {
  const meta = Fields.of(metadata, file, "the safetensors metadata");
  const d = Fields.of(jsonValue(meta, "data"), file, "metadata 'data'", "data.");
  return {
    microBatches: d.int("microBatches", { min: 0 }),
    epoch: d.int("epoch", { min: 0 }),
    batch: d.int("batch", { min: 0 }),
  };
}

// ---- Reading tensors -------------------------------------------------------------------------

/**
 * Gathers named tensors into one flat buffer laid out by `table` (name + prefix per entry).
 * Missing, misshapen, non-F32 and non-finite tensors are UserErrors naming `file`.
 */
export function flatFromTensors(
  tensors: Record<string, Tensor>,
  table: readonly ParamInfo[],
  file: string,
  prefix = "",
): Float32Array {
  const flat = new Float32Array(tableSize(table));
  for (const p of table) {
    const name = prefix + p.name;
    const t = tensors[name];
    if (!t) throw new UserError(`${file}: missing tensor '${name}'`);
    if (!(t.data instanceof Float32Array)) {
      throw new UserError(`${file}: tensor '${name}' is not F32 or F16`);
    }
    if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
      throw new UserError(
        `${file}: tensor '${name}' has shape [${t.shape}], the model config needs [${p.shape}]`,
      );
    }
    checkFinite(t.data, `${file}: tensor '${name}'`);
    flat.set(t.data, p.offset);
  }
  return flat;
}

function checkNoExtra(
  tensors: Record<string, Tensor>,
  table: readonly ParamInfo[],
  prefixes: string[],
  file: string,
) {
  const known = new Set(table.flatMap((p) => prefixes.map((x) => x + p.name)));
  for (const name of Object.keys(tensors)) {
    if (!known.has(name)) {
      throw new UserError(`${file}: unexpected tensor '${name}' (a different model version?)`);
    }
  }
}

/** AdamW's second moments are squares: a negative one would turn the next step into NaN. */
function checkSecondMoments(v: Float32Array, table: readonly ParamInfo[], file: string) {
  for (const p of table) {
    for (let i = p.offset; i < p.offset + p.size; i++) {
      if (v[i] < 0) {
        throw new UserError(
          `${file}: tensor '${V_PREFIX}${p.name}' holds a negative second moment ${v[i]} at ` +
            `index ${i - p.offset} (AdamW's v is a mean of squares)`,
        );
      }
    }
  }
}

// ---- Model files -----------------------------------------------------------------------------

/** True when `dir` holds a model checkpoint. */
export function hasCheckpoint(dir: string): Promise<boolean> {
  return exists(join(dir, MODEL_FILE));
}

/** The checkpoint file `--model PATH` means: PATH itself when it is a file, else PATH/model.safetensors. */
export async function modelFileOf(path: string): Promise<string> {
  try {
    const stat = await Deno.stat(path);
    if (stat.isFile) return path;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    throw new UserError(`${path}: not found (give a checkpoint folder made by 'train')`);
  }
  return join(path, MODEL_FILE);
}

/**
 * Reads the model checkpoint of `path` (a folder made by `train`, or its model.safetensors):
 * its metadata and tensors (not yet checked against a table).
 */
export async function readCheckpoint(
  path: string,
): Promise<{ info: CheckpointInfo; tensors: Record<string, Tensor>; path: string }> {
  const file = await modelFileOf(path);
  if (!(await exists(file))) {
    throw new UserError(`${file}: not found (is ${path} a checkpoint folder made by 'train'?)`);
  }
  const { tensors, metadata } = await readSafetensors(file);
  return {
    info: infoFromMetadata(metadata, file, CHECKPOINT_FORMAT, "checkerboard model checkpoint"),
    tensors,
    path: file,
  };
}

/** The parameters of a checkpoint as a flat buffer for `table` (the model built from its config). */
export function checkpointParams(
  tensors: Record<string, Tensor>,
  table: readonly ParamInfo[],
  path: string,
): Float32Array {
  checkNoExtra(tensors, table, [""], path);
  return flatFromTensors(tensors, table, path);
}

// ---- Train states ----------------------------------------------------------------------------

/** A train state's file as read: metadata checked, tensors not yet checked against a table. */
export interface TrainStateFile {
  info: CheckpointInfo;
  data: DataPosition;
  /** Gives the parameters and moments for the table of the model built from `info.config`. */
  arrays(table: readonly ParamInfo[]): Pick<TrainState, "params" | "adamM" | "adamV">;
  path: string;
}

/** True when `dir` holds a train state (or a legacy model + optimizer pair). */
export async function hasTrainState(dir: string): Promise<boolean> {
  return (await exists(join(dir, TRAIN_STATE_FILE))) ||
    (await exists(join(dir, LEGACY_OPTIM_FILE)) && await exists(join(dir, MODEL_FILE)));
}

/**
 * Reads the resume state of `dir`: train-state.safetensors, or for a run made before it existed
 * the pair model.safetensors + optim.safetensors when their steps agree.
 */
export async function readTrainStateFile(dir: string): Promise<TrainStateFile> {
  const path = join(dir, TRAIN_STATE_FILE);
  if (await exists(path)) {
    const { tensors, metadata } = await readSafetensors(path);
    const info = infoFromMetadata(metadata, path, TRAIN_STATE_FORMAT, "checkerboard train state");
    const data = dataFromMetadata(metadata, path);
    return {
      info,
      data,
      path,
      arrays(table) {
        checkNoExtra(tensors, table, [PARAM_PREFIX, M_PREFIX, V_PREFIX], path);
        const adamV = flatFromTensors(tensors, table, path, V_PREFIX);
        checkSecondMoments(adamV, table, path);
        return {
          params: flatFromTensors(tensors, table, path, PARAM_PREFIX),
          adamM: flatFromTensors(tensors, table, path, M_PREFIX),
          adamV,
        };
      },
    };
  }
  return await readLegacyPair(dir);
}

async function readLegacyPair(dir: string): Promise<TrainStateFile> {
  const optimPath = join(dir, LEGACY_OPTIM_FILE);
  if (!(await exists(optimPath))) {
    throw new UserError(
      `${join(dir, TRAIN_STATE_FILE)}: not found (a resume needs the train state that 'train' ` +
        `writes with every checkpoint)`,
    );
  }
  const model = await readCheckpoint(dir);
  const { tensors, metadata } = await readSafetensors(optimPath);
  const meta = Fields.of(metadata, optimPath, "the safetensors metadata");
  if (meta.raw("format") !== LEGACY_OPTIM_FORMAT) {
    throw new UserError(
      `${optimPath}: not a checkerboard optimizer state (expected format '${LEGACY_OPTIM_FORMAT}')`,
    );
  }
  const optimStep = countValue(meta, "step");
  if (optimStep !== model.info.step) {
    throw new UserError(
      `${optimPath} is at step ${optimStep} but ${model.path} is at step ${model.info.step}: ` +
        `this older checkpoint pair was interrupted while being written and cannot resume ` +
        `exactly (train again into a new --out)`,
    );
  }
  const data = dataFromMetadata(metadata, optimPath);
  return {
    info: model.info,
    data,
    path: `${model.path} + ${optimPath}`,
    arrays(table) {
      checkNoExtra(tensors, table, [M_PREFIX, V_PREFIX], optimPath);
      const adamV = flatFromTensors(tensors, table, optimPath, V_PREFIX);
      checkSecondMoments(adamV, table, optimPath);
      return {
        params: checkpointParams(model.tensors, table, model.path),
        adamM: flatFromTensors(tensors, table, optimPath, M_PREFIX),
        adamV,
      };
    },
  };
}

/** The step of DIR/model.safetensors, or undefined when it is missing or unreadable. */
export async function modelFileStep(dir: string): Promise<number | undefined> {
  try {
    return (await readCheckpoint(dir)).info.step;
  } catch (err) {
    if (err instanceof UserError) return undefined;
    throw err;
  }
}

/**
 * Checks that a checkpoint fits a data manifest: codebook size, scales, latent dimension (the
 * length of the manifest's tokenizer's code vectors, `latentDim`: p*p*3 for the patch VQ, 8 for
 * VQ-16), class count and tokenizer hash.
 */
export function checkAgainstManifest(
  info: CheckpointInfo,
  manifest: Manifest,
  latentDim: number,
  checkpointPath: string,
  manifestPath: string,
): void {
  const c = info.config;
  const fail = (what: string) => {
    throw new UserError(`${checkpointPath} does not fit ${manifestPath}: ${what}`);
  };
  if (c.vocab !== manifest.codes) {
    fail(`codebook size ${c.vocab} vs ${manifest.codes}`);
  }
  const same = c.scales.length === manifest.scales.length &&
    c.scales.every((s, i) => s === manifest.scales[i]);
  if (!same) fail(`scales ${c.scales.join(",")} vs ${manifest.scales.join(",")}`);
  if (c.latentDim !== latentDim) {
    fail(`latent dimension ${c.latentDim} vs the tokenizer's ${latentDim}`);
  }
  if (c.classes !== manifest.classes.length) {
    fail(`${c.classes} classes vs ${manifest.classes.length}`);
  }
  if (info.tokenizerHash && info.tokenizerHash !== manifest.tokenizer.hash) {
    fail(`tokenizer ${info.tokenizerHash} vs ${manifest.tokenizer.hash}`);
  }
}
