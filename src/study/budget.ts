/**
 * Fits the study to the machine: times a few training steps, validation forwards and sampling
 * steps of every model shape the study trains, then picks the number of optimizer steps that
 * every run gets (the same for all: an equal training budget in images seen) so that training,
 * evaluation and sampling together fill the time budget.
 */
import type { Device } from "../engine.ts";
import { UserError } from "../errors.ts";
import type { Manifest } from "../data/shards.ts";
import type { ImageTokenizer } from "../tokenizer/tokenizer.ts";
import { NativeModel } from "../model/native_model.ts";
import { buildModelBatch } from "../train/inputs.ts";
import { ADAMW, trainBatches } from "../train/loop.ts";
import { totalSteps } from "../plan/blocks.ts";
import { sampleCodes } from "../sample/sampler.ts";
import { ENTROPY_STEPS, EVAL_STEPS, type RunSpec, type RunWork } from "./design.ts";
import { studyModelConfig } from "./run.ts";
import type { StudySettings } from "./settings.ts";
import { SAMPLE_DEFAULTS } from "../train/defaults.ts";

/** Measured seconds of one model shape (a ratio and a mixing setting). */
export interface ShapeTiming {
  trainStep: number;
  evalBatch: number;
  /** Seconds per sampled image at 4 steps per scale. */
  sampleImageP4: number;
}

const TIMED_STEPS = 3;
/** As many as the study's sampling batches hold, so the time per image is theirs. */
const SAMPLED_IMAGES = 32;

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Times one model shape on the run's data with a throwaway model. */
export async function timeShape(
  run: Pick<RunSpec, "ropeMix">,
  data: { dir: string; manifest: Manifest },
  tokenizer: ImageTokenizer,
  s: Pick<
    StudySettings,
    "model" | "depth" | "width" | "heads" | "batch" | "guidance" | "guidanceStart"
  >,
  device: Device,
): Promise<ShapeTiming> {
  const { manifest } = data;
  const config = studyModelConfig(s, run.ropeMix, manifest, tokenizer);

  const model = NativeModel.create(config, device, 0);
  model.setCodebook(tokenizer.codebook);
  const stream = trainBatches(data.dir, manifest, s.batch, 0, 0);
  try {
    const first = await stream.next();
    if (first.done) {
      throw new UserError(`${data.dir}: no training images to time the model on`);
    }
    const { batch } = buildModelBatch(first.value.codes, first.value.labels, {
      scales: manifest.scales,
      vocab: config.vocab,
      steps: 4,
      order: "checkerboard",
    });
    const trainTimes: number[] = [], evalTimes: number[] = [];
    for (let i = 0; i <= TIMED_STEPS; i++) { // the first is a warm-up
      const t0 = performance.now();
      model.zeroGrad();
      await model.forward(batch, { backward: true });
      await model.backward();
      await model.step({ ...ADAMW, lr: 0 });
      if (i > 0) trainTimes.push((performance.now() - t0) / 1000);
      const t1 = performance.now();
      await model.forward(batch);
      if (i > 0) evalTimes.push((performance.now() - t1) / 1000);
    }
    const labels = Int32Array.from({ length: SAMPLED_IMAGES }, (_, i) => i % config.classes);
    const sampled = await sampleCodes(model, tokenizer.codebook, labels, {
      steps: 4,
      order: "checkerboard",
      guidance: s.guidance,
      guidanceStart: s.guidanceStart,
      temperature: SAMPLE_DEFAULTS.temperature,
      topK: 0,
      topP: 1,
      seed: 0,
      batch: SAMPLED_IMAGES,
    });
    return {
      trainStep: median(trainTimes),
      evalBatch: median(evalTimes),
      sampleImageP4: sampled.seconds / SAMPLED_IMAGES,
    };
  } finally {
    await stream.return(undefined);
    model.dispose();
  }
}

/** The key of a run's model shape in the timing table. */
export function shapeKey(run: Pick<RunSpec, "ratio" | "ropeMix">): string {
  return `r${run.ratio}-mix-${run.ropeMix}`;
}

export interface RunEstimate {
  /** Seconds per training step. */
  trainStep: number;
  /** Seconds of evaluation and sampling after training. */
  measure: number;
}

/** The time a run needs besides training, from its shape's timing. */
export function estimateRun(
  t: ShapeTiming,
  scales: readonly number[],
  work: RunWork,
  s: Pick<StudySettings, "batch" | "evalImages" | "perClass" | "entropyImages">,
  classes: number,
  valImages: number,
): RunEstimate {
  const evalBatches = Math.ceil(Math.min(s.evalImages, valImages) / s.batch);
  let measure = EVAL_STEPS.length * evalBatches * t.evalBatch;
  // Sampling time grows with the steps of the plan (each step streams the weights once).
  const sampling = (P: number, images: number) =>
    images * t.sampleImageP4 * (totalSteps(scales, P) / totalSteps(scales, 4));
  if (work.samples) {
    for (const P of EVAL_STEPS) measure += sampling(P, classes * s.perClass);
  }
  if (work.entropy) {
    for (const P of ENTROPY_STEPS) measure += sampling(P, s.entropyImages);
  }
  return { trainStep: t.trainStep, measure };
}

/**
 * Optimizer steps per run so that the runs fit `seconds`: (seconds - measuring) / sum of the
 * runs' step times, with 10% held back for what the timings miss (data loading, checkpoints,
 * model set-up). Returns 0 when even measuring does not fit.
 */
export function itersForBudget(seconds: number, runs: readonly RunEstimate[]): number {
  const measuring = runs.reduce((a, r) => a + r.measure, 0);
  const perStep = runs.reduce((a, r) => a + r.trainStep, 0);
  const left = 0.9 * seconds - measuring;
  return left > 0 ? Math.floor(left / perStep) : 0;
}
