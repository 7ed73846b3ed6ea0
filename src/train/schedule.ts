/**
 * What changes from step to step of training, each a pure function of (seed, step), so that a
 * resumed run repeats an uninterrupted one to the bit: the learning rate, the steps per scale P
 * of every micro-batch, the class dropout and the random orders' per-sequence seeds.
 */
import { UsageError } from "../errors.ts";
import { deriveSeed, Rng } from "../util/rng.ts";

export interface LrSchedule {
  /** Peak learning rate. */
  lr: number;
  /** Linear warmup over this many optimizer steps (0: none). */
  warmup: number;
  /** Fractions of totalSteps where the rate steps down, increasing, in (0, 1). */
  drops: readonly number[];
  /** Optimizer steps of the whole run. */
  totalSteps: number;
}

/** Overall factor of all drops together: the rate ends at lr / 10. */
export const TOTAL_DROP = 0.1;

/**
 * The learning rate of optimizer step `step` (0-based):
 *   lr * min(1, (step + 1) / warmup) * TOTAL_DROP ^ (drops passed / number of drops),
 * where a drop at fraction f is passed once step >= floor(f * totalSteps). Each of n drops
 * multiplies the rate by 0.1^(1/n): with the default two (0.9, 0.95) that is sqrt(0.1) each,
 * so the last 5% of the run trains at lr / 10 (the paper's 1e-4 -> 1e-5 in two steps).
 */
export function learningRate(s: LrSchedule, step: number): number {
  const warm = s.warmup > 0 ? Math.min(1, (step + 1) / s.warmup) : 1;
  let passed = 0;
  for (const f of s.drops) if (step >= Math.floor(f * s.totalSteps)) passed++;
  const drop = s.drops.length ? TOTAL_DROP ** (passed / s.drops.length) : 1;
  return s.lr * warm * drop;
}

/** Reads `--lr-drops`: "none", or increasing fractions in (0, 1) like "0.9,0.95". */
export function parseLrDrops(text: string): number[] {
  const t = text.trim();
  if (t === "" || t === "none") return [];
  const drops = t.split(",").map((part) => {
    const f = Number(part.trim());
    if (part.trim() === "" || !Number.isFinite(f) || !(f > 0 && f < 1)) {
      throw new UsageError(`--lr-drops entries must be fractions in (0, 1), got '${part}'`);
    }
    return f;
  });
  for (let i = 1; i < drops.length; i++) {
    if (!(drops[i] > drops[i - 1])) {
      throw new UsageError(`--lr-drops must be increasing, got '${text}'`);
    }
  }
  return drops;
}

// Tags that keep the streams derived from (seed, step, micro) apart.
const TAG_STEPS = 1;
const TAG_DROPOUT = 2;
const TAG_ORDER = 3;
const TAG_DATA = 4;

/** P for micro-batch `micro` of optimizer step `step`: uniform over `choices`. */
export function stepsForBatch(
  choices: readonly number[],
  seed: number,
  step: number,
  micro = 0,
): number {
  if (choices.length === 0) throw new RangeError("no steps-per-scale choices");
  return choices[new Rng(deriveSeed(seed, step, micro, TAG_STEPS)).int(choices.length)];
}

/**
 * Labels with class dropout: each label independently becomes `nullClass` with probability
 * `rate` (DESIGN.md: 0.1, for classifier-free guidance). Returns a new array.
 */
export function dropClasses(
  labels: Int32Array,
  rate: number,
  nullClass: number,
  seed: number,
  step: number,
  micro = 0,
): Int32Array {
  const out = Int32Array.from(labels);
  if (rate <= 0) return out;
  const rng = new Rng(deriveSeed(seed, step, micro, TAG_DROPOUT));
  for (let i = 0; i < out.length; i++) if (rng.next() < rate) out[i] = nullClass;
  return out;
}

/** Per-row seeds of the random order for a micro-batch of `rows` sequences. */
export function sequenceSeeds(rows: number, seed: number, step: number, micro = 0): Int32Array {
  const out = new Int32Array(rows);
  for (let i = 0; i < rows; i++) out[i] = deriveSeed(seed, step, micro, i, TAG_ORDER) | 0;
  return out;
}

/** The shuffle seed of the training data (each epoch reshuffles with (dataSeed, epoch)). */
export function dataSeed(seed: number): number {
  return deriveSeed(seed, TAG_DATA);
}

/**
 * Where micro-batch `index` (counted from the start of training) falls in the data: epoch and
 * batch within the epoch, with `perEpoch` full batches per epoch (the last partial batch of an
 * epoch is dropped).
 */
export function dataPosition(index: number, perEpoch: number): { epoch: number; batch: number } {
  return { epoch: Math.floor(index / perEpoch), batch: index % perEpoch };
}
