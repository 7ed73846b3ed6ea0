/**
 * One run of the study: train a model, then measure it. Each stage writes its own record
 * (train.json, nll.json, entropy.json, samples.json) atomically once it is complete, so a
 * study started again skips every finished stage; a run whose training did not finish is
 * trained again from the start (training is a function of the seed, so the result is the same).
 *
 * Files of OUT/runs/<id>/: the checkpoint (model.safetensors, tokenizer/, metrics.jsonl), the
 * records, and samples/P<p>/{grid.png, samples.npz}.
 */
import { join } from "node:path";
import { UserError } from "../errors.ts";
import type { Device } from "../engine.ts";
import type { Manifest } from "../data/shards.ts";
import type { ImageTokenizer } from "../tokenizer/tokenizer.ts";
import { buildModelConfig, type ModelConfig } from "../model/config.ts";
import { NativeModel } from "../model/native_model.ts";
import {
  CHECKPOINT_TOKENIZER_DIR,
  modelFromCheckpoint,
  readCheckpointWithTokenizer,
} from "../model/load.ts";
import { ADAMW, evaluateNll, train, type TrainOptions } from "../train/loop.ts";
import { LEGACY_OPTIM_FILE, TRAIN_STATE_FILE } from "../model/checkpoint.ts";
import { totalSteps } from "../plan/blocks.ts";
import { sampleCodes, type SamplingOptions } from "../sample/sampler.ts";
import { stepEntropyStats } from "../sample/entropy.ts";
import { classGrid, decodeFinal, samplesNpz } from "../sample/render.ts";
import { encodePng } from "../data/png.ts";
import { exists, fileSystemError, readJsonFile, writeFileAtomic } from "../util/files.ts";
import { ENTROPY_STEPS, EVAL_STEPS, runId, type RunSpec, type RunWork } from "./design.ts";
import type { StudySettings } from "./settings.ts";
import { SAMPLE_DEFAULTS, TRAIN_DEFAULTS } from "../train/defaults.ts";

export type { StudySettings };

export interface TrainRecord {
  iters: number;
  images: number;
  seconds: number;
  secondsPerStep: number;
  tokensPerSecond: number;
  /** Mean training loss (nats per token) over the last 10% of the steps. */
  finalLoss: number;
  paramCount: number;
  /** alpha = sigmoid(a) per mixing layer and head (empty without mixing). */
  mixAlpha: number[][];
}

export interface NllPoint {
  stepsPerScale: number;
  totalSteps: number;
  bitsPerToken: number;
  /** Sum over every token of the pyramid: a code length for the image's final-scale tokens. */
  bitsPerImage: number;
  /** Bits per token of the final scale alone (conditioned on the true coarser scales). */
  finalScaleBits: number;
  perScaleBits: number[];
}

export interface NllRecord {
  images: number;
  tokensPerImage: number;
  points: NllPoint[];
}

export interface EntropyRecord {
  images: number;
  byP: {
    stepsPerScale: number;
    totalSteps: number;
    steps: { step: number; scale: number; mean: number; p25: number; p75: number }[];
  }[];
}

export interface SamplesRecord {
  images: number;
  byP: { stepsPerScale: number; totalSteps: number; grid: string; npz: string }[];
}

export interface RunRecords {
  spec: RunSpec;
  id: string;
  train: TrainRecord;
  nll: NllRecord;
  entropy?: EntropyRecord;
  samples?: SamplesRecord;
}

export interface RunContext {
  run: RunSpec;
  work: RunWork;
  settings: StudySettings;
  /** The shard folder of the run's ratio and its manifest. */
  data: { dir: string; manifest: Manifest };
  tokenizer: ImageTokenizer;
  device: Device;
  runsDir: string;
  quiet: boolean;
  log: (line: string) => void;
}

const RECORD = {
  train: "train.json",
  nll: "nll.json",
  entropy: "entropy.json",
  samples: "samples.json",
} as const;

const round = (v: number, digits = 5) => Number(v.toFixed(digits));

/** The folder of a run. */
export function runDir(runsDir: string, run: RunSpec): string {
  return join(runsDir, runId(run));
}

/** The model of a run: the study's preset and overrides for the data's codes, classes, scales. */
export function studyModelConfig(
  s: Pick<StudySettings, "model" | "depth" | "width" | "heads">,
  ropeMix: string,
  manifest: Manifest,
  tokenizer: ImageTokenizer,
): ModelConfig {
  return buildModelConfig({
    preset: s.model,
    depth: s.depth,
    width: s.width,
    heads: s.heads,
    ropeMix,
    vocab: manifest.codes,
    latentDim: tokenizer.dim,
    classes: manifest.classes.length,
    scales: manifest.scales,
  });
}

/** Runs every stage of `ctx.run` that has no record yet; returns all its records. */
export async function runStages(ctx: RunContext): Promise<RunRecords> {
  const dir = runDir(ctx.runsDir, ctx.run);
  const record = async <T>(name: keyof typeof RECORD, make: () => Promise<T>): Promise<T> => {
    const path = join(dir, RECORD[name]);
    if (await exists(path)) return await readJsonFile(path, "a study record") as T;
    const value = await make();
    await writeFileAtomic(path, JSON.stringify(value, null, 1) + "\n");
    return value;
  };
  const trainRecord = await record("train", () => trainRun(ctx, dir));
  // The trained model, read from its checkpoint once, by the first stage that needs it.
  let model: NativeModel | undefined;
  const trained = async () =>
    model ??= modelFromCheckpoint(await readCheckpointWithTokenizer(dir), ctx.device);
  try {
    const records: RunRecords = {
      spec: ctx.run,
      id: runId(ctx.run),
      train: trainRecord,
      nll: await record("nll", async () => measureNll(ctx, await trained())),
    };
    if (ctx.work.entropy) {
      records.entropy = await record("entropy", async () => measureEntropy(ctx, await trained()));
    }
    if (ctx.work.samples) {
      records.samples = await record(
        "samples",
        async () => writeSamples(ctx, await trained(), dir),
      );
    }
    return records;
  } finally {
    model?.dispose();
  }
}

/** Trains the run's model from scratch into `dir` (replacing an unfinished attempt). */
async function trainRun(ctx: RunContext, dir: string): Promise<TrainRecord> {
  const { run, settings: s, data } = ctx;
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  await Deno.mkdir(dir, { recursive: true }).catch((err) => {
    throw fileSystemError(err, `cannot create the run folder ${dir}`);
  });
  const config = studyModelConfig(s, run.ropeMix, data.manifest, ctx.tokenizer);
  const options: TrainOptions = {
    order: run.order,
    stepsChoices: [...s.stepsPerScaleTrain],
    batch: s.batch,
    accum: s.accum,
    lr: s.lr,
    warmup: s.warmup,
    lrDrops: [...s.lrDrops],
    totalSteps: s.iters,
    classDropout: s.classDropout,
    seed: run.seed,
  };
  const model = NativeModel.create(config, ctx.device, run.seed);
  try {
    await ctx.tokenizer.save(join(dir, CHECKPOINT_TOKENIZER_DIR));
    const t0 = performance.now();
    try {
      await train({
        model,
        manifest: data.manifest,
        dataDir: data.dir,
        outDir: dir,
        codebook: ctx.tokenizer.codebook,
        options,
        loop: {
          evalEvery: 0,
          evalSteps: TRAIN_DEFAULTS.evalStepsPerScale,
          evalBatches: 1,
          checkpointEvery: 0,
          logEvery: TRAIN_DEFAULTS.logEvery,
          stopAfter: 0,
          validateAtEnd: false,
          quiet: ctx.quiet,
        },
        startStep: 0,
        info: {
          config,
          tokenizerHash: data.manifest.tokenizer.hash,
          scales: data.manifest.scales,
          patch: data.manifest.patch,
          order: run.order,
          classes: data.manifest.classes,
          training: { model: s.model, ...options, adamw: ADAMW, data: data.dir },
        },
      });
    } catch (err) {
      if (err instanceof UserError && err.exitCode === 130) {
        throw new UserError(
          `study interrupted while training ${runId(run)}; run the same command again to ` +
            `continue (finished runs are kept, this one starts again)`,
          130,
        );
      }
      throw err;
    }
    const seconds = (performance.now() - t0) / 1000;
    // The optimizer state is only needed to resume training, which the study never does.
    for (const file of [TRAIN_STATE_FILE, LEGACY_OPTIM_FILE]) {
      await Deno.remove(join(dir, file)).catch(() => {});
    }
    const losses = (await Deno.readTextFile(join(dir, "metrics.jsonl"))).trim().split("\n")
      .map((l) => JSON.parse(l)).filter((e) => typeof e.loss === "number");
    const tail = losses.slice(-Math.max(1, Math.ceil(losses.length / 10)));
    const tokensPerImage = data.manifest.sequenceLength;
    return {
      iters: s.iters,
      images: s.iters * s.batch * s.accum,
      seconds: round(seconds, 2),
      secondsPerStep: round(seconds / s.iters, 4),
      tokensPerSecond: Math.round((s.iters * s.batch * s.accum * tokensPerImage) / seconds),
      finalLoss: round(tail.reduce((a, e) => a + e.loss, 0) / tail.length),
      paramCount: model.paramCount,
      mixAlpha: mixingWeights(model),
    };
  } finally {
    model.dispose();
  }
}

/** alpha = sigmoid(a) of every layer's key RoPE mixing logits: (layers with mixing, heads). */
function mixingWeights(model: NativeModel): number[][] {
  const params = model.getState("params");
  return model.params
    .filter((p) => /^blocks\.\d+\.rope_mix$/.test(p.name))
    .sort((a, b) => Number(a.name.split(".")[1]) - Number(b.name.split(".")[1]))
    .map((p) =>
      Array.from(params.subarray(p.offset, p.offset + p.size), (a) => round(1 / (1 + Math.exp(-a))))
    );
}

async function measureNll(ctx: RunContext, model: NativeModel): Promise<NllRecord> {
  const { manifest, dir } = ctx.data;
  const scales = manifest.scales;
  const batch = ctx.settings.batch;
  const maxBatches = Math.max(1, Math.ceil(ctx.settings.evalImages / batch));
  const points: NllPoint[] = [];
  let images = 0;
  for (const P of EVAL_STEPS) {
    ctx.log(`  NLL at ${P} steps per scale`);
    const r = await evaluateNll(model, dir, manifest, ctx.tokenizer.codebook, {
      steps: P,
      order: ctx.run.order,
      batch,
      seed: ctx.run.seed,
      maxBatches,
      quiet: ctx.quiet,
    });
    images = r.images;
    points.push({
      stepsPerScale: P,
      totalSteps: totalSteps(scales, P),
      bitsPerToken: round(r.bitsPerToken),
      bitsPerImage: round(r.perScaleBits.reduce((a, b, k) => a + b * scales[k] * scales[k], 0), 3),
      finalScaleBits: round(r.perScaleBits[scales.length - 1]),
      perScaleBits: r.perScaleBits.map((b) => round(b)),
    });
  }
  return { images, tokensPerImage: manifest.sequenceLength, points };
}

/** Sampling settings of the grids and the entropy measurements. */
function samplingOptions(ctx: RunContext, P: number, entropy: boolean): SamplingOptions {
  return {
    steps: P,
    order: ctx.run.order,
    guidance: ctx.settings.guidance,
    guidanceStart: ctx.settings.guidanceStart,
    temperature: SAMPLE_DEFAULTS.temperature,
    topK: 0,
    topP: 1,
    seed: ctx.run.seed,
    batch: 32,
    entropy,
  };
}

/** `count` labels cycling over the classes. */
function cycledLabels(classes: number, count: number): Int32Array {
  return Int32Array.from({ length: count }, (_, i) => i % classes);
}

async function measureEntropy(ctx: RunContext, model: NativeModel): Promise<EntropyRecord> {
  const scales = ctx.data.manifest.scales;
  const n = ctx.settings.entropyImages;
  const labels = cycledLabels(model.config.classes, n);
  const byP: EntropyRecord["byP"] = [];
  for (const P of ENTROPY_STEPS) {
    ctx.log(`  entropy of ${n} samples at ${P} steps per scale`);
    const r = await sampleCodes(
      model,
      ctx.tokenizer.codebook,
      labels,
      samplingOptions(ctx, P, true),
    );
    const stats = stepEntropyStats(r.entropy!, r.stepOf, n, scales, r.totalSteps);
    byP.push({
      stepsPerScale: P,
      totalSteps: r.totalSteps,
      steps: stats.map((s) => ({
        step: s.step + 1,
        scale: scales[s.scale],
        mean: round(s.mean, 4),
        p25: round(s.p25, 4),
        p75: round(s.p75, 4),
      })),
    });
  }
  return { images: n, byP };
}

async function writeSamples(
  ctx: RunContext,
  model: NativeModel,
  dir: string,
): Promise<SamplesRecord> {
  const scales = ctx.data.manifest.scales;
  const classes = model.config.classes;
  const perClass = ctx.settings.perClass;
  // Grouped by class, perClass each: the grid's rows.
  const labels = Int32Array.from(
    { length: classes * perClass },
    (_, i) => Math.floor(i / perClass),
  );
  const side = scales[scales.length - 1] * ctx.tokenizer.patch;
  const byP: SamplesRecord["byP"] = [];
  for (const P of EVAL_STEPS) {
    ctx.log(`  ${labels.length} samples at ${P} steps per scale`);
    const r = await sampleCodes(
      model,
      ctx.tokenizer.codebook,
      labels,
      samplingOptions(ctx, P, false),
    );
    const images = await decodeFinal(ctx.tokenizer, r.codes, labels.length, scales, ctx.device);
    const folder = join("samples", `P${P}`);
    await Deno.mkdir(join(dir, folder), { recursive: true }).catch((err) => {
      throw fileSystemError(err, `cannot create ${join(dir, folder)}`);
    });
    const grid = classGrid(images, side, labels);
    await writeFileAtomic(
      join(dir, folder, "grid.png"),
      encodePng(grid.rgb, grid.width, grid.height),
    );
    await writeFileAtomic(join(dir, folder, "samples.npz"), samplesNpz(images, side, labels));
    byP.push({
      stepsPerScale: P,
      totalSteps: r.totalSteps,
      grid: join(folder, "grid.png"),
      npz: join(folder, "samples.npz"),
    });
  }
  return { images: labels.length, byP };
}
