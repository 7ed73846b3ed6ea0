/**
 * The native VQ trainer (native/addon/vq_trainer.cc over engine/vq/vq_trainer.h): one
 * optimizer step of LlamaGen's VQ autoencoder over a batch at several image sizes, its state
 * for checkpoints, and its weights as a state dict. `tokenizer train` (vq_train_loop.ts) runs it.
 */
import { UserError } from "../errors.ts";
import { cudaStatus, nativeAddon } from "../engine.ts";
import { architectureProblem, type VqArchitecture } from "./vq_architecture.ts";
import type { VqStateDict } from "./vq_net.ts";

/** One image size of a step: B images (B, 3, H, W) in [-1, 1], and its weight in the sum. */
export interface VqTrainPass {
  images: Float32Array;
  B: number;
  H: number;
  W: number;
  weight: number;
}

/** One step's optimizer and loss settings (engine/vq/vq_trainer.h, VqStepSettings). */
export interface VqStepSettings {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  /** On conv kernels only. */
  weightDecay: number;
  /** Weights of the mean squared and the mean absolute pixel error. */
  pixelL2: number;
  pixelL1: number;
  /** Weights of the codebook loss and of the commitment loss (LlamaGen's beta). */
  codebook: number;
  commit: number;
  /** A code unused for this many steps takes a latent of the batch (0: never). */
  deadAfter: number;
}

/** Sums over one pass (divide by pixels or latents for the means). */
export interface VqPassResult {
  pixelSq: number;
  pixelAbs: number;
  pixels: number;
  latentSq: number;
  latents: number;
}

export interface VqStepResult {
  passes: VqPassResult[];
  /** Distinct codes this step chose, and the perplexity of its code histogram. */
  codesUsed: number;
  perplexity: number;
  /** Codes chosen within the last deadAfter steps; dead codes re-initialised this step. */
  codesLive: number;
  reinitialised: number;
}

/** Everything a checkpoint needs to continue bit for bit. */
export interface VqTrainerState {
  params: Float32Array;
  m: Float32Array;
  v: Float32Array;
  /** (K) the step each code was last chosen at. */
  lastUsed: Float64Array;
  step: number;
}

interface NativeVqTrainer {
  step(passes: VqTrainPass[], settings: VqStepSettings): Promise<VqStepResult>;
  state(): VqTrainerState;
  setState(state: VqTrainerState): void;
  tensors(): VqStateDict;
  paramCount(): number;
  stepCount(): number;
  dispose(): void;
}

/** The addon's VqTrainer constructor (src/engine.ts's Addon). */
export interface NativeVqTrainerConstructor {
  new (backend: string, arch: VqArchitecture, initSeed: number, trainSeed: number): NativeVqTrainer;
}

export const VQ_TRAIN_BACKENDS = ["cpu-ref", "cpu", "cuda"] as const;
export type VqTrainBackend = (typeof VQ_TRAIN_BACKENDS)[number];

export class VqTrainer {
  #native: NativeVqTrainer | undefined;

  private constructor(native: NativeVqTrainer, readonly arch: VqArchitecture) {
    this.#native = native;
  }

  /**
   * A trainer of `arch` with LlamaGen-style random initial weights from `initSeed`; `trainSeed`
   * draws the latents that replace dead codes.
   */
  static create(
    backend: VqTrainBackend,
    arch: VqArchitecture,
    initSeed: number,
    trainSeed: number,
  ): VqTrainer {
    const problem = architectureProblem(arch);
    if (problem) throw new UserError(`VQ architecture: ${problem}`);
    if (backend === "cuda" && !cudaStatus().available) {
      throw new UserError(`VQ training on cuda: CUDA is not available (${cudaStatus().reason})`);
    }
    const native = new (nativeAddon().VqTrainer)(backend, arch, initSeed, trainSeed);
    return new VqTrainer(native, { ...arch, chMult: [...arch.chMult] });
  }

  #ready(): NativeVqTrainer {
    if (!this.#native) throw new UserError("VqTrainer: already disposed");
    return this.#native;
  }

  get paramCount(): number {
    return this.#ready().paramCount();
  }
  get stepCount(): number {
    return this.#ready().stepCount();
  }

  step(passes: VqTrainPass[], settings: VqStepSettings): Promise<VqStepResult> {
    return this.#ready().step(passes, settings);
  }
  state(): VqTrainerState {
    return this.#ready().state();
  }
  setState(state: VqTrainerState): void {
    this.#ready().setState(state);
  }
  /** The weights by LlamaGen's key names (the codebook rows as stored, not normalised). */
  tensors(): VqStateDict {
    return this.#ready().tensors();
  }
  dispose() {
    this.#native?.dispose();
    this.#native = undefined;
  }
}
