/**
 * Checkpoints (DESIGN.md "Files"): a folder with
 * - `model.safetensors`: every parameter as a named F32 tensor (F16 for a shipped model);
 *   `__metadata__` holds JSON strings: format, config, step, tokenizer hash, scales, patch, order, classes, training;
 * - `optim.safetensors`: AdamW moments `m.<name>` and `v.<name>` per parameter; metadata: step
 *   and the data position (for an exact resume).
 * Both are written atomically (temporary name, then rename); the optimizer file first, so a
 * crash between the two leaves a model file whose step disagrees with it, which loading
 * reports. Loading checks everything against the parameter table and the data manifest and
 * turns every mismatch into a UserError naming the file.
 */
import { join } from "node:path";
import { UserError } from "../errors.ts";
import type { Manifest } from "../data/shards.ts";
import { readSafetensors, type Tensor, toFloat16, writeSafetensors } from "../util/safetensors.ts";
import { exists } from "../util/files.ts";
import { type OrderName, parseOrderName } from "../plan/orders.ts";
import type { ModelConfig, ParamInfo } from "./native_model.ts";
import { validateModelConfig } from "./config.ts";

export const MODEL_FILE = "model.safetensors";
export const OPTIM_FILE = "optim.safetensors";
export const CHECKPOINT_FORMAT = "checkerboard-model";
export const OPTIM_FORMAT = "checkerboard-adamw";

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

/** Where the training data stood (optim.safetensors metadata). */
export interface DataPosition {
  /** Micro-batches consumed since the start of training. */
  microBatches: number;
  epoch: number;
  /** Batch index within `epoch` of the next micro-batch. */
  batch: number;
}

export interface OptimInfo {
  step: number;
  data: DataPosition;
}

/** Flat buffers laid out by the parameter table. */
export interface ModelState {
  params: Float32Array;
  adamM?: Float32Array;
  adamV?: Float32Array;
}

function tensorsFromFlat(
  table: readonly ParamInfo[],
  flat: Float32Array,
  prefix = "",
  half = false,
): Record<string, Tensor> {
  const total = table.reduce((a, p) => Math.max(a, p.offset + p.size), 0);
  if (flat.length !== total) {
    throw new RangeError(`flat buffer has ${flat.length} values, the table needs ${total}`);
  }
  const out: Record<string, Tensor> = {};
  for (const p of table) {
    const data = flat.subarray(p.offset, p.offset + p.size);
    out[prefix + p.name] = half
      ? { shape: [...p.shape], data: toFloat16(data), dtype: "F16" }
      : { shape: [...p.shape], data };
  }
  return out;
}

/**
 * Writes a checkpoint into `dir`: optim.safetensors (when moments and `optim` are given), then
 * model.safetensors. `half` stores the parameters as float16 (half the size, for shipping a
 * model; they read back widened to float32).
 */
export async function writeCheckpoint(
  dir: string,
  table: readonly ParamInfo[],
  state: ModelState,
  info: CheckpointInfo,
  optim?: OptimInfo,
  { half = false } = {},
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  if (optim && state.adamM && state.adamV) {
    await writeSafetensors(
      join(dir, OPTIM_FILE),
      {
        ...tensorsFromFlat(table, state.adamM, "m."),
        ...tensorsFromFlat(table, state.adamV, "v."),
      },
      {
        format: OPTIM_FORMAT,
        step: String(optim.step),
        data: JSON.stringify(optim.data),
      },
    );
  }
  await writeSafetensors(join(dir, MODEL_FILE), tensorsFromFlat(table, state.params, "", half), {
    format: CHECKPOINT_FORMAT,
    config: JSON.stringify(info.config),
    step: String(info.step),
    tokenizer_hash: info.tokenizerHash,
    scales: JSON.stringify(info.scales),
    patch: String(info.patch),
    order: info.order,
    classes: JSON.stringify(info.classes),
    training: JSON.stringify(info.training),
  });
}

function parseJson(text: string | undefined, key: string, file: string): any {
  if (text === undefined) throw new UserError(`${file}: metadata has no '${key}'`);
  try {
    return JSON.parse(text);
  } catch {
    throw new UserError(`${file}: metadata '${key}' is not valid JSON`);
  }
}

function parseCount(text: string | undefined, key: string, file: string): number {
  const n = Number(text);
  if (text === undefined || !/^\d+$/.test(text) || !Number.isSafeInteger(n)) {
    throw new UserError(`${file}: metadata '${key}' must be a non-negative integer, got ${text}`);
  }
  return n;
}

function infoFromMetadata(meta: Record<string, string>, file: string): CheckpointInfo {
  if (meta.format !== CHECKPOINT_FORMAT) {
    throw new UserError(`${file}: not a checkerboard model checkpoint (format '${meta.format}')`);
  }
  const config = parseJson(meta.config, "config", file) as ModelConfig;
  try {
    validateModelConfig(config);
  } catch (err) {
    throw new UserError(`${file}: impossible model config: ${(err as Error).message}`);
  }
  const scales = parseJson(meta.scales, "scales", file);
  const classes = parseJson(meta.classes, "classes", file);
  if (!Array.isArray(scales) || !Array.isArray(classes)) {
    throw new UserError(`${file}: metadata 'scales' and 'classes' must be arrays`);
  }
  let order: OrderName;
  try {
    order = parseOrderName(meta.order ?? "");
  } catch {
    throw new UserError(`${file}: metadata 'order' is not an order name: '${meta.order}'`);
  }
  return {
    config,
    step: parseCount(meta.step, "step", file),
    tokenizerHash: meta.tokenizer_hash ?? "",
    scales,
    patch: parseCount(meta.patch, "patch", file),
    order,
    classes,
    training: meta.training ? parseJson(meta.training, "training", file) : {},
  };
}

/**
 * Gathers named tensors into one flat buffer laid out by `table` (name + prefix per entry).
 * Missing, misshapen, non-F32 and unexpected tensors are UserErrors naming `file`.
 */
export function flatFromTensors(
  tensors: Record<string, Tensor>,
  table: readonly ParamInfo[],
  file: string,
  prefix = "",
): Float32Array {
  const total = table.reduce((a, p) => Math.max(a, p.offset + p.size), 0);
  const flat = new Float32Array(total);
  for (const p of table) {
    const t = tensors[prefix + p.name];
    if (!t) throw new UserError(`${file}: missing tensor '${prefix + p.name}'`);
    if (!(t.data instanceof Float32Array)) {
      throw new UserError(`${file}: tensor '${prefix + p.name}' is not F32`);
    }
    if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
      throw new UserError(
        `${file}: tensor '${
          prefix + p.name
        }' has shape [${t.shape}], the model config needs [${p.shape}]`,
      );
    }
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

/** True when `dir` holds a model checkpoint. */
export function hasCheckpoint(dir: string): Promise<boolean> {
  return exists(join(dir, MODEL_FILE));
}

/** Reads model.safetensors of `dir`: its metadata and tensors (not yet checked against a table). */
export async function readCheckpoint(
  dir: string,
): Promise<{ info: CheckpointInfo; tensors: Record<string, Tensor>; path: string }> {
  const path = join(dir, MODEL_FILE);
  if (!(await exists(path))) {
    throw new UserError(`${path}: not found (is ${dir} a checkpoint folder made by 'train'?)`);
  }
  const { tensors, metadata } = await readSafetensors(path);
  return { info: infoFromMetadata(metadata, path), tensors, path };
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

/** Reads optim.safetensors of `dir` for `table`; its step must be `step`. */
export async function readOptimState(
  dir: string,
  table: readonly ParamInfo[],
  step: number,
): Promise<{ adamM: Float32Array; adamV: Float32Array; info: OptimInfo }> {
  const path = join(dir, OPTIM_FILE);
  if (!(await exists(path))) {
    throw new UserError(`${path}: not found (a resume needs the optimizer state)`);
  }
  const { tensors, metadata } = await readSafetensors(path);
  if (metadata.format !== OPTIM_FORMAT) {
    throw new UserError(
      `${path}: not a checkerboard optimizer state (format '${metadata.format}')`,
    );
  }
  const optimStep = parseCount(metadata.step, "step", path);
  if (optimStep !== step) {
    throw new UserError(
      `${path}: optimizer state is at step ${optimStep} but ${MODEL_FILE} is at step ${step} ` +
        `(interrupted while writing the checkpoint?)`,
    );
  }
  const data = parseJson(metadata.data, "data", path) as DataPosition;
  for (const key of ["microBatches", "epoch", "batch"] as const) {
    if (!Number.isSafeInteger(data?.[key]) || data[key] < 0) {
      throw new UserError(`${path}: metadata 'data' has no valid '${key}'`);
    }
  }
  checkNoExtra(tensors, table, ["m.", "v."], path);
  return {
    adamM: flatFromTensors(tensors, table, path, "m."),
    adamV: flatFromTensors(tensors, table, path, "v."),
    info: { step: optimStep, data },
  };
}

/**
 * Checks that a checkpoint fits a data manifest: codebook size, scales, latent dimension
 * (p*p*3 for the patch tokenizer), class count and tokenizer hash.
 */
export function checkAgainstManifest(
  info: CheckpointInfo,
  manifest: Manifest,
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
  const latent = manifest.patch * manifest.patch * 3;
  if (c.latentDim !== latent) {
    fail(`latent dimension ${c.latentDim} vs ${latent} (patch ${manifest.patch})`);
  }
  if (c.classes !== manifest.classes.length) {
    fail(`${c.classes} classes vs ${manifest.classes.length}`);
  }
  if (info.tokenizerHash && info.tokenizerHash !== manifest.tokenizer.hash) {
    fail(`tokenizer ${info.tokenizerHash} vs ${manifest.tokenizer.hash}`);
  }
}
