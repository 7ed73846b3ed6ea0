/**
 * The training loop and validation NLL (DESIGN.md "Training").
 *
 * Everything that varies from step to step is a function of (seed, step) (src/train/schedule.ts)
 * and the data position is a function of the step (micro-batch index = step * accum), so a run
 * resumed from a checkpoint repeats an uninterrupted one to the bit.
 */
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { type Batch, type Manifest, streamBatches } from "../data/shards.ts";
import type { OrderName } from "../plan/orders.ts";
import { deriveSeed } from "../util/rng.ts";
import { Progress } from "../util/progress.ts";
import { METRICS_FILE, MetricsLog } from "../util/metrics_log.ts";
import { StopRequest } from "../util/stop_request.ts";
import { countNonFinite } from "../util/finite.ts";
import type { NativeModel } from "../model/native_model.ts";
import { type CheckpointInfo, writeCheckpoint } from "../model/checkpoint.ts";
import type { Split } from "../data/dataset.ts";
import { buildModelBatch } from "./inputs.ts";
import { allReduceSum, world } from "../dist/world.ts";
import {
  dataPosition,
  dataSeed,
  dropClasses,
  learningRate,
  type LrSchedule,
  sequenceSeeds,
  stepsForBatch,
} from "./schedule.ts";

export { METRICS_FILE };

/** AdamW settings that are not options (paper 4.1: weight decay 0.01, on matrices only). */
export const ADAMW = { beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.01 } as const;

export interface TrainOptions {
  order: OrderName;
  /** P is drawn per micro-batch from this list. */
  stepsChoices: number[];
  batch: number;
  accum: number;
  lr: number;
  warmup: number;
  lrDrops: number[];
  /** Optimizer steps of the whole run. */
  totalSteps: number;
  classDropout: number;
  seed: number;
}

export interface LoopOptions {
  /** Validate every N steps (0: only at the end). */
  evalEvery: number;
  /** P of every scale for validation. */
  evalSteps: number | number[];
  /** At most this many validation batches (0: the whole split). */
  evalBatches: number;
  /** Checkpoint every K steps (0: only at the end). */
  checkpointEvery: number;
  /** A metrics line every N steps (loss and tokens/s averaged over those steps). */
  logEvery: number;
  /** Stop after this many steps of this invocation, with a checkpoint (0: no limit). */
  stopAfter: number;
  /** Validate once more after the last step (default true). */
  validateAtEnd?: boolean;
  quiet?: boolean;
}

export interface TrainContext {
  model: NativeModel;
  manifest: Manifest;
  dataDir: string;
  outDir: string;
  /** (K, latentDim) the tokenizer's code vectors, given to the model (setCodebook). */
  codebook: Float32Array;
  options: TrainOptions;
  loop: LoopOptions;
  /** Optimizer steps already done (0 for a fresh run). */
  startStep: number;
  /** Checkpoint metadata except the step. */
  info: Omit<CheckpointInfo, "step">;
}

export interface TrainResult {
  step: number;
  interrupted: boolean;
  lastLoss: number;
  lastVal?: NllResult;
}

/**
 * This rank's rows of every global batch of `batch` rows (all of them in one process). The
 * batch must split evenly, so that every rank's gradient weighs the same.
 */
export function rankRows(batch: number): { begin: number; end: number } {
  const w = world();
  if (batch % w.size !== 0) {
    throw new UserError(
      `--batch ${batch} does not split over ${w.size} ranks (give a multiple of ${w.size})`,
    );
  }
  const per = batch / w.size;
  return { begin: w.rank * per, end: (w.rank + 1) * per };
}

/** The slots with a target in a model batch. */
function countedSlots(batch: { targets: Int32Array }): number {
  let n = 0;
  for (const t of batch.targets) n += t >= 0 ? 1 : 0;
  return n;
}

/** Images of a split, counted from the shards the manifest lists (what is actually read). */
export function splitImages(manifest: Manifest, split: Split): number {
  return manifest.shards.filter((s) => s.split === split).reduce((a, s) => a + s.count, 0);
}

/** Full training batches per epoch (the last partial batch of an epoch is dropped). */
export function batchesPerEpoch(manifest: Manifest, batch: number): number {
  return Math.floor(splitImages(manifest, "train") / batch);
}

/** Optimizer steps for `epochs` epochs. */
export function stepsForEpochs(manifest: Manifest, batch: number, accum: number, epochs: number) {
  return Math.max(1, Math.ceil((epochs * batchesPerEpoch(manifest, batch)) / accum));
}

/**
 * Training micro-batches from micro-batch `start` on: epoch e is the training split shuffled
 * with (dataSeed(seed), e), cut into full batches.
 */
export async function* trainBatches(
  dir: string,
  manifest: Manifest,
  batch: number,
  seed: number,
  start: number,
): AsyncGenerator<Batch> {
  const perEpoch = batchesPerEpoch(manifest, batch);
  if (perEpoch < 1) {
    throw new UserError(
      `--batch ${batch} is larger than the ${
        splitImages(manifest, "train")
      } training images in the shards of ${dir}`,
    );
  }
  let { epoch, batch: skip } = dataPosition(start, perEpoch);
  for (;; epoch++, skip = 0) {
    let index = 0;
    const stream = streamBatches(dir, manifest, "train", {
      batchSize: batch,
      shuffle: true,
      seed: dataSeed(seed),
      epoch,
      dropLast: true,
    });
    for await (const b of stream) {
      if (index++ < skip) continue;
      yield b;
    }
    // An epoch must yield its batches: otherwise the loop would spin on empty epochs forever.
    if (index !== perEpoch) {
      throw new UserError(
        `${dir}: epoch ${epoch} of the training split gave ${index} batches of ${batch}, the ` +
          `manifest's shards promise ${perEpoch} (shards changed under the manifest?)`,
      );
    }
  }
}

export interface NllResult {
  /** Steps per scale used. */
  steps: number | number[];
  /** Mean NLL over every token of every scale, bits per token. */
  bitsPerToken: number;
  /** Mean NLL per scale, bits per token. */
  perScaleBits: number[];
  tokens: number;
  images: number;
}

/**
 * Validation NLL in bits per token (nats / ln 2) with a fixed P per scale, teacher-forced on the
 * ground-truth codes with the true labels, over the whole validation split (or, capped at
 * `maxBatches` batches, that many images evenly spaced over the split). For the random order each image's order is seeded by its
 * index in the split, so the result does not depend on the batch size.
 */
export async function evaluateNll(
  model: NativeModel,
  dir: string,
  manifest: Manifest,
  codebook: Float32Array,
  o: {
    steps: number | number[];
    order: OrderName;
    batch: number;
    seed?: number;
    maxBatches?: number;
    quiet?: boolean;
    /** The progress line's label (default "validate"). */
    label?: string;
  },
): Promise<NllResult> {
  const scales = manifest.scales;
  const nats = new Float64Array(scales.length);
  const counts = new Float64Array(scales.length);
  const total = splitImages(manifest, "val");
  if (total < 1) {
    throw new UserError(`${join(dir, "manifest.json")}: the validation split has no images`);
  }
  model.setCodebook(codebook);
  const maxBatches = o.maxBatches ?? 0;
  const images = maxBatches > 0 ? Math.min(total, maxBatches * o.batch) : total;
  // A capped evaluation takes images evenly spaced over the split (datasets are often stored
  // class by class, so the first images alone would be a biased sample).
  const chosen = new Uint8Array(total);
  for (let j = 0; j < images; j++) chosen[Math.floor((j * total) / images)] = 1;
  // Several ranks share the chosen images out (every size-th one each) and sum the figures.
  const w = world();
  const mine = Math.floor(images / w.size) + (w.rank < images % w.size ? 1 : 0);
  const progress = new Progress(o.label ?? "validate", mine, "img", {
    quiet: o.quiet || !w.isRoot,
  });
  const L = manifest.sequenceLength;
  const pendingCodes = new Uint16Array(o.batch * L);
  const pendingLabels = new Int32Array(o.batch);
  const pendingSeeds = new Int32Array(o.batch);
  let pending = 0, seen = 0, index = 0, chosenSoFar = 0;
  const run = async () => {
    const rows = pending;
    const { batch, layouts } = buildModelBatch(
      pendingCodes.subarray(0, rows * L),
      pendingLabels.slice(0, rows),
      {
        scales,
        vocab: model.config.vocab,
        steps: o.steps,
        order: o.order,
        sequenceSeeds: pendingSeeds.subarray(0, rows),
      },
    );
    const result = await model.forward(batch);
    const T = batch.slots;
    const scaleOf = layouts[0].scaleOf; // the same for every row: scales are contiguous
    for (let r = 0; r < rows; r++) {
      for (let t = 1; t < T; t++) {
        nats[scaleOf[t]] += result.lossRows[r * T + t];
        counts[scaleOf[t]] += 1;
      }
    }
    seen += rows;
    pending = 0;
    progress.update(seen);
  };
  for await (
    const b of streamBatches(dir, manifest, "val", { batchSize: o.batch, shuffle: false })
  ) {
    for (let r = 0; r < b.labels.length; r++, index++) {
      if (!chosen[index]) continue;
      if (chosenSoFar++ % w.size !== w.rank) continue;
      pendingCodes.set(b.codes.subarray(r * L, (r + 1) * L), pending * L);
      pendingLabels[pending] = b.labels[r];
      // The random order of an image is seeded by its index in the split.
      pendingSeeds[pending] = deriveSeed(o.seed ?? 0, index, 0x7a1) | 0;
      if (++pending === o.batch) await run();
    }
    if (seen + pending >= mine) break;
  }
  if (pending > 0) await run();
  progress.finish();
  if (w.size > 1) {
    const sums = allReduceSum(Float64Array.from([...nats, ...counts, seen]));
    nats.set(sums.subarray(0, scales.length));
    counts.set(sums.subarray(scales.length, 2 * scales.length));
    seen = sums[2 * scales.length];
  }
  if (seen !== images) {
    throw new UserError(
      `${dir}: read ${seen} of the ${images} validation images the manifest's shards promise`,
    );
  }
  const tokens = counts.reduce((a, b) => a + b, 0);
  const sum = nats.reduce((a, b) => a + b, 0);
  return {
    steps: o.steps,
    bitsPerToken: sum / tokens / Math.LN2,
    perScaleBits: Array.from(nats, (n, k) => n / counts[k] / Math.LN2),
    tokens,
    images: seen,
  };
}

/**
 * Unigram entropy (bits) of the codes of every scale of a split: the NLL of a model that knows
 * only each scale's code frequencies, the floor a model must beat. Also the whole-sequence
 * value (token-weighted mean of the per-scale entropies).
 */
export async function unigramEntropy(
  dir: string,
  manifest: Manifest,
  split: "train" | "val" = "val",
): Promise<{ perScaleBits: number[]; bitsPerToken: number }> {
  const scales = manifest.scales;
  const K = manifest.codes;
  const hist = scales.map(() => new Float64Array(K));
  const L = manifest.sequenceLength;
  for await (const b of streamBatches(dir, manifest, split, { batchSize: 1024 })) {
    for (let r = 0; r < b.labels.length; r++) {
      let offset = r * L;
      scales.forEach((s, k) => {
        for (let i = 0; i < s * s; i++) hist[k][b.codes[offset + i]]++;
        offset += s * s;
      });
    }
  }
  const perScaleBits = hist.map((h) => {
    const n = h.reduce((a, b) => a + b, 0);
    let H = 0;
    for (const c of h) if (c > 0) H -= (c / n) * Math.log2(c / n);
    return H;
  });
  const L0 = scales.reduce((a, s) => a + s * s, 0);
  const bitsPerToken = perScaleBits.reduce((a, H, k) => a + (H * scales[k] * scales[k]) / L0, 0);
  return { perScaleBits, bitsPerToken };
}

function formatLoss(x: number): string {
  return x.toFixed(x < 0.1 ? 4 : 3);
}

function formatRate(r: number): string {
  return r >= 1e3 ? `${(r / 1e3).toFixed(1)}k` : r.toFixed(0);
}

/** True when an NLL result is finite overall and at every scale. */
export function isFiniteNll(r: NllResult): boolean {
  return Number.isFinite(r.bitsPerToken) && r.perScaleBits.every(Number.isFinite);
}

/**
 * Trains from ctx.startStep to options.totalSteps (or until stopAfter / Ctrl-C), writing
 * metrics and checkpoints into ctx.outDir. Ctrl-C stops at the next step boundary after a
 * checkpoint (a second Ctrl-C quits at once; checkpoints are written atomically).
 *
 * A loss, a validation NLL or a parameter that turns non-finite stops the run with a
 * UserError before anything of the diverged state is written: the last checkpoint stays.
 */
export async function train(ctx: TrainContext): Promise<TrainResult> {
  const { model, manifest, options: o, loop } = ctx;
  model.setCodebook(ctx.codebook);
  const schedule: LrSchedule = {
    lr: o.lr,
    warmup: o.warmup,
    drops: o.lrDrops,
    totalSteps: o.totalSteps,
  };
  const perEpoch = batchesPerEpoch(manifest, o.batch);
  const nullClass = model.config.classes;
  // Several ranks: each runs the rows [begin, end) of every global micro-batch; rank 0 alone
  // writes metrics and checkpoints (every rank runs the same steps, in the same order).
  const w = world();
  const rows = rankRows(o.batch);
  const metrics = w.isRoot ? await MetricsLog.open(ctx.outDir, ctx.startStep) : null;
  const data = trainBatches(ctx.dataDir, manifest, o.batch, o.seed, ctx.startStep * o.accum);

  const stop = new StopRequest("stopping after this step");

  // The step of the newest checkpoint on disk (the resumed one, or none for a fresh run).
  let lastCheckpoint = ctx.startStep > 0 ? ctx.startStep : -1;
  const diverged = (step: number, what: string): UserError => {
    const kept = lastCheckpoint >= 0
      ? `the checkpoint of step ${lastCheckpoint} in ${ctx.outDir} is kept`
      : `no checkpoint was written`;
    // On a resume the options are fixed by the checkpoint, so a lower lr means a new run.
    const hint = ctx.startStep > 0
      ? "the resumed train state may be damaged; a lower --lr or a warmup needs a new run " +
        "(another --out)"
      : "try a lower --lr or a warmup";
    return new UserError(`training diverged at step ${step}: ${what}; ${kept} (${hint})`);
  };

  /** The model's state at `step`, refused when any value is NaN or Inf (the run diverged). */
  const finiteState = (step: number) => {
    const params = model.getState("params");
    const adamM = model.getState("adamM");
    const adamV = model.getState("adamV");
    const bad = countNonFinite(params).count + countNonFinite(adamM).count +
      countNonFinite(adamV).count;
    if (bad > 0) throw diverged(step, `${bad} parameters or AdamW moments are NaN or Inf`);
    return { params, adamM, adamV };
  };

  // A diverged state is never written: the previous checkpoint stays.
  const checkpoint = async (step: number, state = finiteState(step)) => {
    const { params, adamM, adamV } = state;
    const microBatches = step * o.accum;
    const pos = dataPosition(microBatches, perEpoch);
    lastCheckpoint = step;
    if (!w.isRoot) return;
    await writeCheckpoint(
      ctx.outDir,
      model.params,
      { params, adamM, adamV },
      { ...ctx.info, step },
      { microBatches, epoch: pos.epoch, batch: pos.batch },
    );
  };
  const validate = async (step: number, quiet: boolean) => {
    const r = await evaluateNll(model, ctx.dataDir, manifest, ctx.codebook, {
      steps: loop.evalSteps,
      order: o.order,
      batch: o.batch,
      seed: o.seed,
      maxBatches: loop.evalBatches,
      quiet,
      label: `validate P=${
        Array.isArray(loop.evalSteps) ? loop.evalSteps.join(",") : loop.evalSteps
      }`,
    });
    if (!isFiniteNll(r)) throw diverged(step, `validation NLL ${r.bitsPerToken} bits per token`);
    return r;
  };

  const progress = new Progress("train", o.totalSteps - ctx.startStep, "step", {
    quiet: loop.quiet || !w.isRoot,
  });
  let step = ctx.startStep;
  let lastLoss = NaN;
  let lastVal: NllResult | undefined;
  let window = { steps: 0, loss: 0, tokens: 0, seconds: 0 };
  try {
    while (step < o.totalSteps) {
      const t0 = performance.now();
      const lr = learningRate(schedule, step);
      model.zeroGrad();
      let nats = 0, tokens = 0;
      const ps: number[] = [];
      for (let micro = 0; micro < o.accum; micro++) {
        const next = await data.next();
        if (next.done) throw new Error("training data stream ended");
        const b = next.value;
        const P = stepsForBatch(o.stepsChoices, o.seed, step, micro);
        ps.push(P);
        // Dropout and random orders are drawn for the global batch, then sliced: every world
        // size trains on the same examples.
        const labels = dropClasses(b.labels, o.classDropout, nullClass, o.seed, step, micro);
        const seeds = o.order === "random"
          ? sequenceSeeds(labels.length, o.seed, step, micro)
          : undefined;
        const L = manifest.sequenceLength;
        const { batch } = buildModelBatch(
          b.codes.subarray(rows.begin * L, rows.end * L),
          labels.slice(rows.begin, rows.end),
          {
            scales: manifest.scales,
            vocab: model.config.vocab,
            steps: P,
            order: o.order,
            sequenceSeeds: seeds?.slice(rows.begin, rows.end),
          },
        );
        // Every row counts the same slots, so the global batch counts size / rows as many.
        if (w.size > 1) {
          batch.lossTokens = countedSlots(batch) / (rows.end - rows.begin) * o.batch;
        }
        const r = await model.forward(batch, { backward: true });
        if (!Number.isFinite(r.loss)) throw diverged(step + 1, `loss ${r.loss}`);
        await model.backward({ lastMicroBatch: micro === o.accum - 1 });
        nats += r.loss * r.tokens;
        tokens += r.tokens;
      }
      // One small all-reduce per step: the global loss, and a stop that any rank was asked
      // for (Ctrl-C reaches the ranks at different moments; they must stop at the same step).
      if (w.size > 1) {
        const sums = allReduceSum(Float64Array.from([nats, tokens, stop.requested ? 1 : 0]));
        [nats, tokens] = [sums[0], sums[1]];
        if (sums[2] > 0) stop.request();
      }
      // The gradients of the accum micro-batches are summed (each the gradient of its mean
      // loss), i.e. accum x their mean. AdamW is invariant to that scale once eps is scaled too.
      await model.step({ ...ADAMW, lr, eps: ADAMW.eps * o.accum });
      step++;
      const loss = nats / tokens;
      lastLoss = loss;
      const seconds = (performance.now() - t0) / 1000;
      window = {
        steps: window.steps + 1,
        loss: window.loss + loss,
        tokens: window.tokens + tokens,
        seconds: window.seconds + seconds,
      };
      const evalNow = loop.evalEvery > 0 && step % loop.evalEvery === 0 && step < o.totalSteps;
      if (evalNow) lastVal = await validate(step, true);
      const stopHere = stop.requested ||
        (loop.stopAfter > 0 && step - ctx.startStep >= loop.stopAfter);
      const checkpointNow = (loop.checkpointEvery > 0 && step % loop.checkpointEvery === 0) ||
        stopHere;
      // A step to be checkpointed (or the last) is checked before its metrics line, so that a
      // diverged step leaves no line behind.
      const state = checkpointNow || step === o.totalSteps ? finiteState(step) : undefined;
      if (step % loop.logEvery === 0 || evalNow || step === o.totalSteps) {
        const entry: Record<string, unknown> = {
          step,
          epoch: Number(((step * o.accum) / perEpoch).toFixed(4)),
          loss: window.loss / window.steps,
          lr,
          tokensPerSec: Math.round(window.tokens / window.seconds),
          stepsPerScale: ps,
        };
        if (evalNow && lastVal) {
          entry.valBitsPerToken = lastVal.bitsPerToken;
          entry.valPerScaleBits = lastVal.perScaleBits;
        }
        await metrics?.write(entry);
        window = { steps: 0, loss: 0, tokens: 0, seconds: 0 };
      }
      progress.update(
        step - ctx.startStep,
        `loss ${formatLoss(loss)} ${formatRate(tokens / seconds)} tok/s` +
          (lastVal ? ` val ${lastVal.bitsPerToken.toFixed(3)} bit` : ""),
      );
      if (checkpointNow) await checkpoint(step, state);
      if (stopHere) {
        if (!loop.quiet && w.isRoot && Deno.stderr.isTerminal()) console.error(); // end the bar
        if (stop.requested) {
          throw new UserError(
            `interrupted at step ${step} of ${o.totalSteps}; checkpoint written to ${ctx.outDir} ` +
              `(continue with --resume)`,
            130,
          );
        }
        return { step, interrupted: false, lastLoss, lastVal };
      }
    }
    progress.finish();
    // The final validation comes before the final checkpoint, so that a model whose
    // validation NLL is not finite is never written.
    if (loop.validateAtEnd ?? true) lastVal = await validate(step, loop.quiet ?? false);
    // (A resume of a finished train state rewrites its model file, which a kill may have left
    // one checkpoint behind.)
    if (lastCheckpoint !== step || step === ctx.startStep) await checkpoint(step);
    if (lastVal && (loop.validateAtEnd ?? true)) {
      await metrics?.write({
        step,
        valBitsPerToken: lastVal.bitsPerToken,
        valPerScaleBits: lastVal.perScaleBits,
        evalStepsPerScale: loop.evalSteps,
      });
    }
    return { step, interrupted: false, lastLoss, lastVal };
  } finally {
    stop.dispose();
    await data.return(undefined);
  }
}
