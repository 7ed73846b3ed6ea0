/**
 * Resuming a run: the train state of its folder (src/model/checkpoint.ts) becomes a model with
 * the saved parameters, AdamW moments and step count, and the training options it was started
 * with (its `training` metadata, every field checked). The data position is a function of the
 * step (micro-batch = step * accum), so the saved position must agree with it.
 */
import { UserError } from "../errors.ts";
import type { Backend } from "../engine.ts";
import { Fields } from "../util/schema.ts";
import { ORDER_NAMES } from "../plan/orders.ts";
import { type CheckpointInfo, readTrainStateFile } from "../model/checkpoint.ts";
import { NativeModel, type Precision } from "../model/native_model.ts";
import type { TrainOptions } from "./loop.ts";

/** The training options a checkpoint records (its `training` metadata). */
export function trainOptionsOf(info: CheckpointInfo, path: string): TrainOptions {
  const t = Fields.of(info.training, path, "metadata 'training'", "training.");
  const lrDrops = t.numberList("lrDrops", { min: 0, max: 1 });
  if (lrDrops.some((f, i) => f <= 0 || f >= 1 || (i > 0 && f <= lrDrops[i - 1]))) {
    t.fail("lrDrops", "must be increasing fractions in (0, 1)", lrDrops.join(","));
  }
  return {
    order: t.choice("order", ORDER_NAMES),
    stepsChoices: t.intList("stepsChoices", { min: 1 }, { minLength: 1 }),
    batch: t.int("batch", { min: 1 }),
    accum: t.int("accum", { min: 1 }),
    lr: t.number("lr", { min: 0 }),
    warmup: t.int("warmup", { min: 0 }),
    lrDrops,
    totalSteps: t.int("totalSteps", { min: 1 }),
    classDropout: t.number("classDropout", { min: 0, max: 1 }),
    seed: t.int("seed", { min: 0 }),
  };
}

export interface ResumedRun {
  model: NativeModel;
  /** The checkpoint's metadata (its step is the step to continue from). */
  info: CheckpointInfo;
  /** The training options the run was started with. */
  options: TrainOptions;
  /** The file(s) the state came from, for messages. */
  path: string;
}

/**
 * Reads the train state of `outDir` and rebuilds the run on `device`: the model with its
 * parameters, moments and step count. Every tensor is checked (names, shapes, finite values),
 * and the data position against the step.
 */
export async function resumeRun(
  outDir: string,
  device: Backend,
  precision?: Precision,
): Promise<ResumedRun> {
  const state = await readTrainStateFile(outDir);
  const options = trainOptionsOf(state.info, state.path);
  const step = state.info.step;
  if (state.data.microBatches !== step * options.accum) {
    throw new UserError(
      `${state.path}: data position ${state.data.microBatches} micro-batches does not match ` +
        `step ${step} x accum ${options.accum}`,
    );
  }
  const model = NativeModel.create(state.info.config, device, options.seed, precision);
  try {
    const { params, adamM, adamV } = state.arrays(model.params);
    model.setState("params", params);
    model.setState("adamM", adamM);
    model.setState("adamV", adamV);
    model.stepCount = step;
  } catch (err) {
    model.dispose();
    throw err;
  }
  return { model, info: state.info, options, path: state.path };
}
