/**
 * The folder of a `tokenizer train` run: it is a tokenizer folder (tokenizer.json and
 * tokenizer.safetensors, written at every checkpoint, so `--tokenizer DIR` works mid-run), plus
 * vq-train-state.safetensors (parameters, AdamW moments and code usage, with the run's options
 * as metadata) that --resume continues from bit for bit, and metrics.jsonl.
 */
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { exists, fileSystemError } from "../util/files.ts";
import { parseJsonStrict } from "../util/json.ts";
import { Fields } from "../util/schema.ts";
import { countNonFinite } from "../util/finite.ts";
import { readSafetensors, writeSafetensors } from "../util/safetensors.ts";
import { architectureProblem, patchOf, type VqArchitecture } from "./vq_architecture.ts";
import {
  parseArchitecture,
  VQ_TOKENIZER_FORMAT,
  vqTensorHash,
  VqTokenizer,
  type VqTokenizerConfig,
} from "./vq_tokenizer.ts";
import type { VqTrainerState } from "./vq_trainer.ts";
import type { VqStateDict } from "./vq_net.ts";

export const VQ_TRAIN_STATE_FILE = "vq-train-state.safetensors";
const STATE_FORMAT = "checkerboard-vq-train";

/** What shapes a run; fixed from its first step (a resume takes them from the state). */
export interface VqTrainOptions {
  /** Dataset spec as given, and the image side it was loaded at. */
  dataset: string;
  side: number;
  /** Token grid sides; each trains on the image resized to side * patch px. */
  scales: number[];
  architecture: VqArchitecture;
  batch: number;
  totalSteps: number;
  lr: number;
  warmup: number;
  lrDrops: number[];
  /** Loss weights: mean |error| beside the mean squared error (weight 1), codebook, commit. */
  pixelL1: number;
  codebookWeight: number;
  commit: number;
  weightDecay: number;
  deadAfter: number;
  seed: number;
}

/** The problem with a set of options, or null. */
export function optionsProblem(o: VqTrainOptions): string | null {
  const arch = architectureProblem(o.architecture);
  if (arch) return arch;
  const p = patchOf(o.architecture);
  const last = o.scales[o.scales.length - 1];
  if (o.side % p !== 0) {
    return `the downsampling factor ${p} (2^(levels - 1) for ${o.architecture.chMult.length} ` +
      `levels) does not divide the image side ${o.side}`;
  }
  if (last * p !== o.side) {
    return `the last scale ${last} times the downsampling factor ${p} is ${last * p} px, ` +
      `not the image side ${o.side}`;
  }
  return null;
}

function parseOptions(value: unknown, file: string): VqTrainOptions {
  const f = Fields.of(value, file, "metadata 'options'", "options.");
  const o: VqTrainOptions = {
    dataset: f.string("dataset", { nonEmpty: true }),
    side: f.int("side", { min: 1 }),
    scales: f.intList("scales", { min: 1 }, { minLength: 1 }),
    architecture: parseArchitecture(f, "architecture"),
    batch: f.int("batch", { min: 1 }),
    totalSteps: f.int("totalSteps", { min: 1 }),
    lr: f.number("lr", { min: 0 }),
    warmup: f.int("warmup", { min: 0 }),
    lrDrops: f.numberList("lrDrops", { min: 0, max: 1 }),
    pixelL1: f.number("pixelL1", { min: 0 }),
    codebookWeight: f.number("codebookWeight", { min: 0 }),
    commit: f.number("commit", { min: 0 }),
    weightDecay: f.number("weightDecay", { min: 0 }),
    deadAfter: f.int("deadAfter", { min: 0 }),
    seed: f.int("seed", { min: 0 }),
  };
  const problem = optionsProblem(o);
  if (problem) f.fail("architecture", `is impossible here: ${problem}`);
  return o;
}

/** True when `dir` holds a train state. */
export function hasVqTrainState(dir: string): Promise<boolean> {
  return exists(join(dir, VQ_TRAIN_STATE_FILE));
}

/**
 * Writes the run's checkpoint at `step`: first the tokenizer files, then the train state (the
 * resume point), each atomically. A state with a NaN or Inf is refused before anything is
 * written (the caller reports the divergence).
 */
export async function writeVqCheckpoint(
  dir: string,
  options: VqTrainOptions,
  state: VqTrainerState,
  tensors: VqStateDict,
): Promise<void> {
  for (
    const [name, values] of [["params", state.params], ["m", state.m], ["v", state.v]] as const
  ) {
    const bad = countNonFinite(values).count;
    if (bad > 0) throw new UserError(`${bad} ${name} values are NaN or Inf`);
  }
  await trainedTokenizer(options, tensors, state.step).save(dir);
  const n = state.params.length;
  try {
    await writeSafetensors(
      join(dir, VQ_TRAIN_STATE_FILE),
      {
        params: { shape: [n], data: state.params },
        m: { shape: [n], data: state.m },
        v: { shape: [n], data: state.v },
        lastUsed: { shape: [state.lastUsed.length], data: state.lastUsed },
      },
      {
        format: STATE_FORMAT,
        version: "1",
        step: String(state.step),
        options: JSON.stringify(options),
      },
    );
  } catch (err) {
    throw fileSystemError(err, `cannot write the train state in ${dir}`);
  }
}

/** The tokenizer a run's tensors make, described as trained by this tool. */
export function trainedTokenizer(
  options: VqTrainOptions,
  tensors: VqStateDict,
  step: number,
): VqTokenizer {
  const arch = options.architecture;
  const config: VqTokenizerConfig = {
    format: VQ_TOKENIZER_FORMAT,
    version: 1,
    architecture: arch,
    codes: arch.codes,
    codeDim: arch.codeDim,
    patch: patchOf(arch),
    source: {
      kind: "trained",
      dataset: options.dataset,
      side: options.side,
      scales: options.scales,
      steps: step,
      seed: options.seed,
    },
    codebook: { origin: "trained" },
    hash: vqTensorHash(arch, tensors),
  };
  return new VqTokenizer(config, tensors);
}

/**
 * Reads DIR's train state: the options it was started with and the trainer state, every
 * array's length checked against the options' architecture by the caller (setState).
 */
export async function readVqTrainState(
  dir: string,
): Promise<{ options: VqTrainOptions; state: VqTrainerState; path: string }> {
  const path = join(dir, VQ_TRAIN_STATE_FILE);
  const { tensors, metadata } = await readSafetensors(path);
  if (metadata.format !== STATE_FORMAT) {
    throw new UserError(
      `${path}: not a tokenizer train state (format '${metadata.format ?? ""}', expected ` +
        `'${STATE_FORMAT}')`,
    );
  }
  if (metadata.version !== "1") {
    throw new UserError(`${path}: train state version '${metadata.version}' (expected 1)`);
  }
  const options = parseOptions(parseJsonStrict(metadata.options ?? "", path), path);
  const step = Number(metadata.step);
  if (!Number.isSafeInteger(step) || step < 0 || step > options.totalSteps) {
    throw new UserError(`${path}: step '${metadata.step}' is not in [0, ${options.totalSteps}]`);
  }
  const array = <T>(name: string, type: new (n: number) => T): T => {
    const t = tensors[name];
    if (!t || !(t.data instanceof (type as unknown as typeof Float32Array))) {
      throw new UserError(`${path}: tensor '${name}' is missing or of the wrong type`);
    }
    return t.data as unknown as T;
  };
  const state: VqTrainerState = {
    params: array("params", Float32Array),
    m: array("m", Float32Array),
    v: array("v", Float32Array),
    lastUsed: array("lastUsed", Float64Array),
    step,
  };
  if (state.m.length !== state.params.length || state.v.length !== state.params.length) {
    throw new UserError(`${path}: params, m and v differ in length`);
  }
  if (state.lastUsed.length !== options.architecture.codes) {
    throw new UserError(
      `${path}: usage of ${state.lastUsed.length} codes, the architecture has ` +
        `${options.architecture.codes}`,
    );
  }
  return { options, state, path };
}
