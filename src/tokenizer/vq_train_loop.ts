/**
 * The training loop of `tokenizer train`: LlamaGen's VQ autoencoder on any dataset the tool
 * reads, every step one batch encoded at each scale's size (the image area-resized to s * patch
 * px, paper section 3.3), so that coarse scales reconstruct well too.
 *
 * Everything that varies from step to step is a function of (seed, step): the batch (a seeded
 * permutation per epoch), the learning rate, the dead codes' replacements (native). So a run
 * resumed from its train state repeats an uninterrupted one to the bit.
 */
import { UserError } from "../errors.ts";
import type { Device } from "../engine.ts";
import { imageAt, type ImageSet, splitIndices } from "../data/dataset.ts";
import { deriveSeed, permutation } from "../util/rng.ts";
import { Progress } from "../util/progress.ts";
import { MetricsLog } from "../util/metrics_log.ts";
import { StopRequest } from "../util/stop_request.ts";
import { learningRate } from "../train/schedule.ts";
import { psnr } from "./patch_vq.ts";
import { reconstruct } from "./reconstruction.ts";
import { patchOf } from "./vq_architecture.ts";
import { imagesToInput } from "./vq_tokenizer.ts";
import type { VqStepResult, VqTrainer } from "./vq_trainer.ts";
import { trainedTokenizer, type VqTrainOptions, writeVqCheckpoint } from "./vq_train_state.ts";

/** AdamW's settings that are not options (LlamaGen's tokenizer training: betas 0.9, 0.95). */
export const VQ_ADAMW = { beta1: 0.9, beta2: 0.95, eps: 1e-8 } as const;

export interface VqLoopOptions {
  /** Validate every N steps (0: only at the end), on at most evalImages validation images. */
  evalEvery: number;
  evalImages: number;
  /** Checkpoint every K steps (0: only at the end). */
  checkpointEvery: number;
  /** A metrics line every N steps (averages over those steps). */
  logEvery: number;
  /** Stop after this many steps of this invocation, with a checkpoint (0: no limit). */
  stopAfter: number;
  quiet?: boolean;
}

export interface VqScalePsnr {
  side: number;
  px: number;
  psnrDb: number;
}

export interface VqTrainResult {
  step: number;
  /** The last validation (null when none ran). */
  validation: { images: number; scales: VqScalePsnr[] } | null;
}

/** Tags that keep the streams derived from the seed apart. */
const TAG_EPOCH = 11;

/**
 * The dataset indices of the images of optimizer step `step` (0-based): the training split in a
 * seeded order per epoch. The order of the last epoch asked for is kept (one permutation per
 * epoch, not per step).
 */
export class BatchOrder {
  private epoch = -1;
  private order: Int32Array = new Int32Array(0);

  constructor(
    private readonly train: Int32Array,
    private readonly batch: number,
    private readonly seed: number,
  ) {}

  indices(step: number): Int32Array {
    const perEpoch = Math.floor(this.train.length / this.batch);
    const epoch = Math.floor(step / perEpoch), first = (step % perEpoch) * this.batch;
    if (epoch !== this.epoch) {
      this.order = permutation(this.train.length, deriveSeed(this.seed, epoch, TAG_EPOCH));
      this.epoch = epoch;
    }
    const out = new Int32Array(this.batch);
    for (let j = 0; j < this.batch; j++) out[j] = this.train[this.order[first + j]];
    return out;
  }
}

/** PSNR in dB of a mean squared error of values in [-1, 1] (as [0, 1] images: mse / 4). */
function psnrOfSigned(sumSq: number, count: number): number {
  return psnr(sumSq / count / 4);
}

/**
 * Validation: PSNR per scale of `images` validation images through the run's current weights,
 * the way `tokenizer recon` measures it (decoded, clamped to bytes, against the resized image).
 */
export async function validateVq(
  trainer: VqTrainer,
  options: VqTrainOptions,
  set: ImageSet,
  images: number,
  device: Device,
  quiet: boolean,
): Promise<{ images: number; scales: VqScalePsnr[] }> {
  const all = splitIndices(set.count, "val");
  const val = all.subarray(0, Math.min(all.length, images));
  const tokenizer = trainedTokenizer(options, trainer.tensors(), trainer.stepCount);
  try {
    const { sqErr } = await reconstruct(tokenizer, set, val, options.scales, 0, device, { quiet });
    const p = patchOf(options.architecture);
    return {
      images: val.length,
      scales: options.scales.map((s, k) => ({
        side: s,
        px: s * p,
        psnrDb: Number(psnr(sqErr[k] / val.length).toFixed(3)),
      })),
    };
  } finally {
    tokenizer.dispose();
  }
}

/**
 * Trains from the trainer's step to options.totalSteps (or until stopAfter / Ctrl-C), writing
 * metrics and checkpoints into `outDir`. Ctrl-C stops at the next step boundary after a
 * checkpoint. A loss that turns non-finite stops the run before anything of it is written.
 */
export async function trainVq(
  trainer: VqTrainer,
  options: VqTrainOptions,
  set: ImageSet,
  outDir: string,
  device: Device,
  loop: VqLoopOptions,
): Promise<VqTrainResult> {
  const o = options;
  const train = splitIndices(set.count, "train");
  if (train.length < o.batch) {
    throw new UserError(
      `dataset ${set.name} has ${train.length} training images, fewer than --batch ${o.batch}`,
    );
  }
  const patch = patchOf(o.architecture), side = set.side;
  const schedule = { lr: o.lr, warmup: o.warmup, drops: o.lrDrops, totalSteps: o.totalSteps };
  const startStep = trainer.stepCount;
  const metrics = await MetricsLog.open(outDir, startStep);
  const stop = new StopRequest("stopping after this step");
  const progress = new Progress("tokenizer train", o.totalSteps - startStep, "step", {
    quiet: loop.quiet,
  });
  const order = new BatchOrder(train, o.batch, o.seed);
  const pixels = new Uint8Array(o.batch * side * side * 3); // (batch, side, side, 3)
  const inputs = o.scales.map((s) => new Float32Array(o.batch * 3 * (s * patch) ** 2));
  let lastCheckpoint = startStep > 0 ? startStep : -1;
  const diverged = (step: number, what: string) =>
    new UserError(
      `tokenizer training diverged at step ${step}: ${what}; ` +
        (lastCheckpoint >= 0
          ? `the checkpoint of step ${lastCheckpoint} in ${outDir} is kept`
          : "no checkpoint was written") +
        " (try a lower --lr or a longer --warmup)",
    );
  const checkpoint = async (step: number) => {
    try {
      await writeVqCheckpoint(outDir, o, trainer.state(), trainer.tensors());
    } catch (err) {
      if (err instanceof UserError && /NaN or Inf/.test(err.message)) {
        throw diverged(step, err.message);
      }
      throw err;
    }
    lastCheckpoint = step;
  };

  let step = startStep;
  let validation: VqTrainResult["validation"] = null;
  const emptyWindow = () => ({
    steps: 0,
    seconds: 0,
    loss: 0,
    pixelSq: o.scales.map(() => 0),
    pixels: o.scales.map(() => 0),
    latentSq: 0,
    latents: 0,
    reinitialised: 0,
  });
  let window = emptyWindow();
  let last: VqStepResult | undefined;
  try {
    while (step < o.totalSteps) {
      const t0 = performance.now();
      const indices = order.indices(step);
      for (let j = 0; j < o.batch; j++) pixels.set(imageAt(set, indices[j]), j * side * side * 3);
      const passes = o.scales.map((s, k) => {
        const px = s * patch;
        imagesToInput(pixels, o.batch, side, px, inputs[k]);
        return { images: inputs[k], B: o.batch, H: px, W: px, weight: 1 };
      });
      const lr = learningRate(schedule, step);
      const r = await trainer.step(passes, {
        lr,
        ...VQ_ADAMW,
        weightDecay: o.weightDecay,
        pixelL2: 1,
        pixelL1: o.pixelL1,
        codebook: o.codebookWeight,
        commit: o.commit,
        deadAfter: o.deadAfter,
      });
      step++;
      last = r;
      let loss = 0;
      r.passes.forEach((p, k) => {
        loss += p.pixelSq / p.pixels + o.pixelL1 * p.pixelAbs / p.pixels +
          (o.codebookWeight + o.commit) * p.latentSq / p.latents;
        window.pixelSq[k] += p.pixelSq;
        window.pixels[k] += p.pixels;
        window.latentSq += p.latentSq;
        window.latents += p.latents;
      });
      if (!Number.isFinite(loss)) throw diverged(step, `loss ${loss}`);
      const seconds = (performance.now() - t0) / 1000;
      window.steps++;
      window.seconds += seconds;
      window.loss += loss;
      window.reinitialised += r.reinitialised;

      const evalNow = loop.evalEvery > 0 && step % loop.evalEvery === 0 && step < o.totalSteps;
      if (evalNow) validation = await validateVq(trainer, o, set, loop.evalImages, device, true);
      const stopHere = stop.requested || (loop.stopAfter > 0 && step - startStep >= loop.stopAfter);
      if (step % loop.logEvery === 0 || evalNow || step === o.totalSteps || stopHere) {
        const entry: Record<string, unknown> = {
          step,
          epoch: Number((step * o.batch / train.length).toFixed(4)),
          lr,
          loss: window.loss / window.steps,
          trainPsnrPerScale: o.scales.map((s, k) => ({
            side: s,
            psnrDb: Number(psnrOfSigned(window.pixelSq[k], window.pixels[k]).toFixed(3)),
          })),
          latentError: window.latentSq / window.latents,
          codesUsed: r.codesUsed,
          perplexity: Number(r.perplexity.toFixed(3)),
          codesLive: r.codesLive,
          reinitialised: window.reinitialised,
          imagesPerSec: Number((window.steps * o.batch / window.seconds).toFixed(2)),
        };
        if (evalNow && validation) {
          entry.valImages = validation.images;
          entry.valPsnrPerScale = validation.scales;
        }
        await metrics.write(entry);
        window = emptyWindow();
      }
      const finest = r.passes[r.passes.length - 1];
      progress.update(
        step - startStep,
        `${psnrOfSigned(finest.pixelSq, finest.pixels).toFixed(1)} dB ` +
          `codes ${r.codesLive}/${o.architecture.codes} ${(o.batch / seconds).toFixed(1)} img/s` +
          (validation ? ` val ${validation.scales[validation.scales.length - 1].psnrDb} dB` : ""),
      );
      const checkpointNow = (loop.checkpointEvery > 0 && step % loop.checkpointEvery === 0) ||
        stopHere;
      if (checkpointNow) await checkpoint(step);
      if (stopHere) {
        if (!loop.quiet && Deno.stderr.isTerminal()) console.error(); // end the bar's line
        if (stop.requested) {
          throw new UserError(
            `interrupted at step ${step} of ${o.totalSteps}; checkpoint written to ${outDir} ` +
              `(continue with --resume)`,
            130,
          );
        }
        return { step, validation };
      }
    }
    progress.finish();
    validation = await validateVq(trainer, o, set, loop.evalImages, device, loop.quiet ?? false);
    if (lastCheckpoint !== step || step === startStep) await checkpoint(step);
    await metrics.write({
      step,
      valImages: validation.images,
      valPsnrPerScale: validation.scales,
      codesLive: last?.codesLive,
    });
    return { step, validation };
  } finally {
    stop.dispose();
  }
}
