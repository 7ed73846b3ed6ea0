/**
 * The training defaults, in one place: `train` and `study` both read them, and `train --help`
 * shows them. The paper's S recipe (4.1): AdamW at lr 1e-4, no warmup, two lr drops over the
 * last 10% of the run, P drawn from 1, 2, 4, 8, 16, class dropout 0.1.
 */
import type { OrderName } from "../plan/orders.ts";
import type { PresetName } from "../model/config.ts";

export const TRAIN_DEFAULTS = {
  model: "tiny" as PresetName,
  ropeMix: "none",
  order: "checkerboard" as OrderName,
  /** P is drawn per micro-batch from this list. */
  stepsPerScaleTrain: [1, 2, 4, 8, 16],
  batch: 32,
  accum: 1,
  lr: 1e-4,
  warmup: 0,
  /** Fractions of the run where the lr steps down; the run ends at lr/10. */
  lrDrops: [0.9, 0.95],
  epochs: 1,
  classDropout: 0.1,
  seed: 0,
  /** The fixed P of every scale for validation NLL. */
  evalStepsPerScale: 4,
  checkpointEvery: 1000,
  logEvery: 10,
} as const;

/** Sampling defaults shared by `sample`, `study` and the benchmarks. */
export const SAMPLE_DEFAULTS = {
  /** Classifier-free guidance weight. */
  cfg: 2,
  /** Guidance is off for the first steps (the 1x1 and 2x2 scales at ratio 2, as in the paper). */
  cfgStart: 5,
  temperature: 1,
} as const;
