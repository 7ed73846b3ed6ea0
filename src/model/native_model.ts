/**
 * The transformer as TypeScript sees it: a typed wrapper over the addon's Model class
 * (native/addon/model.cc). Parameters, gradients and AdamW moments live natively in flat
 * buffers described by `params` (the layout table).
 */
import { type Backend, nativeAddon } from "../engine.ts";
import { UserError } from "../errors.ts";

export interface ModelConfig {
  /** K, the codebook size. */
  vocab: number;
  /** Length of a code vector (the tokenizer's latent), p*p*3 for the patch tokenizer. */
  latentDim: number;
  /** C; the class table has C + 1 rows, row C is the null class used for CFG. */
  classes: number;
  depth: number;
  width: number;
  heads: number;
  mlpRatio: number;
  /** Token-grid sides, coarse to fine. */
  scales: number[];
  /** Key RoPE mixing in the first n layers (0: none, depth: all). */
  ropeMixLayers: number;
}

export interface ParamInfo {
  name: string;
  shape: number[];
  /** Offset in values into the flat buffers. */
  offset: number;
  size: number;
  /** AdamW weight decay applies (linear weight matrices). */
  decay: boolean;
  init: string;
}

/** One batch of B sequences of T slots (DESIGN.md, Sequence and inputs). */
export interface ModelBatch {
  batch: number;
  slots: number;
  /** (B) class index, or `classes` for the null class. */
  labels: Int32Array;
  /** (B*T) position index: 0 class token, 1 learned first-block position, 2 + grid index. */
  posP: Int32Array;
  posQ: Int32Array;
  /**
   * (B*L) every code of each sequence: scales concatenated, raster order inside a scale (a
   * shard row). The engine builds the Eq. 1 inputs from them, posP, posQ and the model's
   * codebook (setCodebook): u, the previous scale's latents upsampled, and v, the fed code's.
   */
  codes: Int32Array;
  /** (B*T) code to predict; -1 ignored (the class slot). */
  targets: Int32Array;
  /** (T) slot t attends to slots [0, visibleEnd[t]). */
  visibleEnd: Int32Array;
  /**
   * The backward's loss is the sum over the counted slots divided by this many tokens
   * (default: this batch's counted slots, its mean). A data-parallel rank gives the global
   * batch's count, so that the ranks' gradients sum to the global batch's mean gradient.
   */
  lossTokens?: number;
}

export interface ForwardResult {
  /** Mean cross-entropy in nats over the slots with a target. */
  loss: number;
  tokens: number;
  /** (B*T) per-slot cross-entropy (0 for ignored slots). */
  lossRows: Float32Array;
  /** (B*T, vocab), when asked for. */
  logits?: Float32Array;
}

export interface AdamWOptions {
  lr: number;
  beta1: number;
  beta2: number;
  eps: number;
  weightDecay: number;
}

export type StateName = "params" | "grads" | "adamM" | "adamV";

/**
 * One call of the native KV-cached blockwise sampler over B images (DESIGN.md "Sampling").
 * The plan is a slot layout (src/plan/layout.ts): slot 0 is the class token, then scale by
 * scale and block by block the tokens of each block. Step s samples block s + 1; the first
 * forward also runs the class token, so a call runs exactly blockCount - 1 forwards.
 */
export interface NativeSampleRequest {
  /** (B) class of each image, in [0, classes). */
  labels: Int32Array;
  /** (B) global index of each image: with the seed and the slot it keys the random numbers. */
  imageIndex: Int32Array;
  /** Per block (blockCount): first slot, end slot, scale index (-1 for block 0). */
  blockStart: Int32Array;
  blockEnd: Int32Array;
  blockScale: Int32Array;
  /** (T) shared by every image, or (B*T) one layout per image: position y*s+x of each slot. */
  posOf: Int32Array;
  /** Same shape as posOf: the paired position in the previous block, -1 for none. */
  prevPosOf: Int32Array;
  /** CFG weight w (0: no unconditional rows are run). */
  guidance: number;
  /** w is 0 for steps < guidanceStart. */
  guidanceStart: number;
  /** 0: greedy. */
  temperature: number;
  /** 0: off. */
  topK: number;
  /** 1: off. */
  topP: number;
  /** Integer in [0, 2^53). */
  seed: number;
  /** Return the entropy (bits) of every slot's final sampling distribution. */
  entropy: boolean;
  /** Return the codes after every step. */
  stepCodes: boolean;
  /** Return the conditional logits of every slot (for tests). */
  logits: boolean;
}

export interface NativeSampleResult {
  /** (B*T) sampled code of every slot in slot order; -1 for the class slot. */
  codes: Int32Array;
  /** (B*T) entropy in bits of each slot's sampling distribution; 0 for the class slot. */
  entropy?: Float32Array;
  /** (steps*B*T) codes after each step, -1 where not sampled yet. */
  stepCodes?: Int32Array;
  /** (B*T*vocab) conditional logits of every slot (the class slot's row is zero). */
  logits?: Float32Array;
  /** Forward passes run: the plan's total steps. */
  forwardPasses: number;
}

interface AddonModel {
  paramTable(): ParamInfo[];
  forward(batch: ModelBatch, wantLogits: boolean, forBackward: boolean): Promise<ForwardResult>;
  backward(lastMicroBatch?: boolean): Promise<void>;
  step(lr: number, beta1: number, beta2: number, eps: number, weightDecay: number): Promise<void>;
  zeroGrad(): void;
  getParam(name: string): Float32Array;
  setParam(name: string, values: Float32Array): void;
  getState(which: StateName): Float32Array;
  setState(which: Exclude<StateName, "grads">, values: Float32Array): void;
  setCodebook(values: Float32Array): void;
  stepCount(): number;
  sample(
    request: NativeSampleRequest,
    onStep: ((step: number, steps: number) => void) | null,
  ): Promise<NativeSampleResult>;
  setStepCount(t: number): void;
  attachDataParallel(zero1: boolean, bucketValues: number): DataParallelInfo;
  dispose(): void;
}

/** What attachDataParallel set up (native/engine/dist/data_parallel.h). */
export interface DataParallelInfo {
  /** This rank's optimizer shard of the flat parameters under ZeRO-1 (all of them without). */
  shardBegin: number;
  shardEnd: number;
  /** What carries the gradients: "mpi", "nccl", or "mpi (host copies: ...)". */
  transport: string;
  /** The all-reduce runs during the backward, in buckets (host buffers, plain data parallel). */
  overlapped: boolean;
}

/**
 * The matmul precision: fp32, or bf16 (bf16 weight copies and matmul inputs, fp32 accumulation,
 * norms, softmax, loss, master weights and optimizer state; DESIGN.md, mixed precision). On the
 * cpu, bf16 needs AVX512-BF16; on cuda it is the default.
 */
export type Precision = "fp32" | "bf16";

export class NativeModel {
  readonly params: ParamInfo[];
  readonly paramCount: number;

  private constructor(
    readonly config: ModelConfig,
    readonly device: Backend,
    private readonly native: AddonModel,
  ) {
    this.params = native.paramTable();
    this.paramCount = this.params.reduce((a, p) => a + p.size, 0);
  }

  /**
   * Builds a model with parameters initialised from `seed`. Throws for an impossible config,
   * and a UserError for a precision this machine cannot run (bf16 on a cpu without
   * AVX512-BF16). Without `precision`, the backend's default: fp32 on the cpu, bf16 on cuda.
   */
  static create(
    config: ModelConfig,
    device: Backend,
    seed: number,
    precision?: Precision,
  ): NativeModel {
    const addon = nativeAddon() as unknown as {
      Model: new (
        config: ModelConfig,
        backend: string,
        seed: number,
        precision?: Precision,
      ) => AddonModel;
    };
    if (precision === undefined) {
      return new NativeModel(config, device, new addon.Model(config, device, seed));
    }
    try {
      return new NativeModel(config, device, new addon.Model(config, device, seed, precision));
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      if (/bf16|precision/i.test(message)) {
        throw new UserError(`--precision ${precision} on ${device}: ${message}`);
      }
      throw err;
    }
  }

  /**
   * Gives the model the tokenizer's code vectors (K*latentDim), the latents that forward and
   * sample feed as Eq. 1's u and v. They are not parameters: a run takes them from its
   * tokenizer (checkpoints do not hold them). Copied.
   */
  setCodebook(codebook: Float32Array) {
    const c = this.config;
    if (codebook.length !== c.vocab * c.latentDim) {
      throw new UserError(
        `the codebook has ${codebook.length} values but the model needs ${c.vocab} x ${c.latentDim}`,
      );
    }
    this.native.setCodebook(codebook);
  }

  /** Forward pass (the model's codebook must be set); `backward: true` keeps what backward() needs. */
  forward(batch: ModelBatch, opts: { logits?: boolean; backward?: boolean } = {}) {
    return this.native.forward(batch, opts.logits ?? false, opts.backward ?? false);
  }

  /**
   * Accumulates (+=) the gradient of the last forward({ backward: true }). Under data parallel
   * with buckets, `lastMicroBatch` (the step's last backward) all-reduces the gradients while
   * the backward runs.
   */
  backward(opts: { lastMicroBatch?: boolean } = {}): Promise<void> {
    return this.native.backward(opts.lastMicroBatch ?? false);
  }

  zeroGrad() {
    this.native.zeroGrad();
  }

  /** One AdamW step (decay only on `decay` tensors); increments stepCount. */
  step(o: AdamWOptions): Promise<void> {
    return this.native.step(o.lr, o.beta1, o.beta2, o.eps, o.weightDecay);
  }

  get stepCount(): number {
    return this.native.stepCount();
  }
  set stepCount(t: number) {
    this.native.setStepCount(t);
  }

  /**
   * Samples B images with the KV-cached blockwise sampler; `onStep` is called after each step
   * (on the JS thread, while the native loop goes on).
   */
  sample(
    request: NativeSampleRequest,
    onStep?: (step: number, steps: number) => void,
  ): Promise<NativeSampleResult> {
    return this.native.sample(request, onStep ?? null);
  }

  /** A copy of one parameter tensor. */
  getParam(name: string): Float32Array {
    return this.native.getParam(name);
  }
  setParam(name: string, values: Float32Array) {
    this.native.setParam(name, values);
  }
  /**
   * Makes this model one replica of a data-parallel run over the ranks of src/dist/world.ts:
   * step() then exchanges the gradients (one all-reduce, or with `bucketValues` > 0 buckets of
   * that many values all-reduced during the last backward of a step; with zero1 a reduce-scatter, a
   * sharded AdamW step and an all-gather), and every rank's parameters become rank 0's. The
   * forward's batch must carry the global batch's token count (ModelBatch.lossTokens).
   * getState and setState of the AdamW moments become collective under zero1: every rank
   * calls them; rank 0 gets the whole state, the others an empty array.
   */
  attachDataParallel(o: { zero1: boolean; bucketValues?: number }): DataParallelInfo {
    return this.native.attachDataParallel(o.zero1, o.bucketValues ?? 0);
  }

  /** A copy of a whole flat buffer (layout = `params`). */
  getState(which: StateName): Float32Array {
    return this.native.getState(which);
  }
  setState(which: Exclude<StateName, "grads">, values: Float32Array) {
    this.native.setState(which, values);
  }

  dispose() {
    this.native.dispose();
  }
}
