/**
 * LlamaGen's VQ-16 autoencoder in the native engine (native/engine/vq/vq_model.h through
 * native/addon/vq.cc): the encoder, the l2-normalised nearest-code quantiser and the decoder.
 * The only TypeScript file that touches the native VqNet. Arguments are checked here and
 * reported as UserErrors, so the native checks behind them only catch bugs.
 *
 * Images are NCHW float in [-1, 1] (LlamaGen's `2 * u8 / 255 - 1`); H and W are multiples of the
 * patch (16 for VQ-16), and the latent grid is (h, w) = (H / 16, W / 16).
 */
import { cudaStatus, nativeAddon } from "../engine.ts";
import { UserError } from "../errors.ts";
import {
  architectureProblem,
  deriveArchitecture,
  patchOf,
  type VqArchitecture,
} from "./vq_architecture.ts";

export type { VqArchitecture } from "./vq_architecture.ts";

/**
 * The backends: the engine's three, and `cpu-ref-f64`, the reference loops in float64 (weights
 * and inputs widened; every output a Float64Array), the ground truth of the parity test.
 */
export const VQ_BACKENDS = ["cpu-ref", "cpu", "cuda", "cpu-ref-f64"] as const;
export type VqBackend = (typeof VQ_BACKENDS)[number];
type F32Backend = Exclude<VqBackend, "cpu-ref-f64">;

/** Float32Array, or Float64Array on `cpu-ref-f64`. */
export type VqFloats = Float32Array | Float64Array;

export interface VqEncoded<F extends VqFloats = Float32Array> {
  /** (B, D, h, w): quant_conv(encoder(x)), before quantisation (not normalised). */
  latent: F;
  /** (B, h, w): the nearest code of each normalised latent vector. */
  indices: Int32Array;
  /** (B, h, w): its squared distance (between normalised vectors: 2 - 2 cos). */
  dist2: F;
  /** (B, zChannels, h, w): encoder(x), when asked for. */
  encOut?: F;
}

export interface VqDecoded<F extends VqFloats = Float32Array> {
  /** (B, 3, 16h, 16w), unclamped. */
  images: F;
  /** (B, D, h, w): the normalised codebook rows (decodeCodes with intermediates). */
  quant?: F;
  /** (B, zChannels, h, w): post_quant_conv(zq) (with intermediates). */
  postQuant?: F;
  /** (B, ch * chMult[last], h, w): decoder conv_in then the mid blocks (with intermediates). */
  decMid?: F;
}

/** A state dict: float32 tensors by name (e.g. readTorchCheckpoint's result). */
export type VqStateDict = Record<string, { shape: number[]; data: Float32Array }>;

/** The addon's decodeCodes and decodeLatents: a (B, h, w) grid of `Input` -> images. */
type NativeDecode<Input> = (
  input: Input,
  B: number,
  h: number,
  w: number,
  opts: { intermediates: boolean },
) => Promise<VqDecoded<VqFloats>>;

/** The addon's VqNet object (native/addon/vq.cc). */
interface NativeVqNet {
  encode(
    images: Float32Array,
    B: number,
    H: number,
    W: number,
    opts: { encOut: boolean },
  ): Promise<VqEncoded<VqFloats>>;
  decodeCodes: NativeDecode<Int32Array>; // indices (B, h, w)
  decodeLatents: NativeDecode<VqFloats>; // zq (B, D, h, w)
  setCodebook(codebook: Float32Array, K: number, D: number): void;
  config(): VqArchitecture;
  dispose(): void;
}

/** The addon's VqNet constructor (src/engine.ts's Addon). */
export interface NativeVqNetConstructor {
  new (backend: string, tensors: VqStateDict): NativeVqNet;
  new (backend: string, random: "random", arch: VqArchitecture, seed: number): NativeVqNet;
}

function checkBackend(backend: string): void {
  if (!(VQ_BACKENDS as readonly string[]).includes(backend)) {
    throw new UserError(`unknown VQ backend '${backend}' (one of: ${VQ_BACKENDS.join(", ")})`);
  }
  if (backend === "cuda") {
    const status = cudaStatus();
    if (!status.available) {
      throw new UserError(
        `VQ on cuda: CUDA is not available (${status.reason || "no reason given"})`,
      );
    }
  }
}

/**
 * Checks that `value` is one of `types` holding `count` values (`formula` names the count, e.g.
 * "B * h * w"); a UserError naming `name` otherwise.
 */
function checkArray(
  value: unknown,
  types: readonly (Float32ArrayConstructor | Float64ArrayConstructor | Int32ArrayConstructor)[],
  count: number,
  name: string,
  formula: string,
): void {
  const typed = types.some((T) => value instanceof T);
  const length = typed ? (value as ArrayLike<number>).length : undefined;
  if (length === count) return;
  throw new UserError(
    `${name} must be ${types.map((T) => `a ${T.name}`).join(" or ")} of ${formula} = ${count} ` +
      `values, got ${length ?? "another type"}`,
  );
}

function checkInt(value: number, name: string, min: number, max = 2 ** 31 - 1): void {
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new UserError(`${name} must be an integer in [${min}, ${max}], got ${value}`);
  }
}

export class VqNet<F extends VqFloats = Float32Array> {
  #native: NativeVqNet | undefined;
  #arch: VqArchitecture;

  private constructor(native: NativeVqNet, readonly backend: VqBackend) {
    this.#native = native;
    this.#arch = native.config();
  }

  /**
   * A network from a state dict (e.g. readTorchCheckpoint's result); the architecture is derived
   * from the shapes and checked tensor by tensor (`source` names the file in errors).
   */
  static fromTensors(
    backend: "cpu-ref-f64",
    tensors: VqStateDict,
    source?: string,
  ): VqNet<Float64Array>;
  static fromTensors(
    backend: F32Backend,
    tensors: VqStateDict,
    source?: string,
  ): VqNet<Float32Array>;
  static fromTensors(backend: VqBackend, tensors: VqStateDict, source?: string): VqNet<VqFloats>;
  static fromTensors(
    backend: VqBackend,
    tensors: VqStateDict,
    source = "the VQ tensors",
  ): VqNet<VqFloats> {
    checkBackend(backend);
    const shapes: Record<string, number[]> = {};
    for (const [name, t] of Object.entries(tensors)) {
      const count = t.shape.reduce((a, b) => a * b, 1);
      if (!(t.data instanceof Float32Array) || t.data.length !== count) {
        throw new UserError(
          `${source}: tensor '${name}' has ${t.data?.length ?? 0} float32 values, its shape ` +
            `[${t.shape.join(", ")}] needs ${count}`,
        );
      }
      shapes[name] = t.shape;
    }
    deriveArchitecture(shapes, source); // UserErrors before the native side sees them
    return new VqNet(new (nativeAddon().VqNet)(backend, tensors), backend);
  }

  /** A network of `arch` with random weights from `seed` (benchmarks; images mean nothing). */
  static random(backend: "cpu-ref-f64", arch: VqArchitecture, seed: number): VqNet<Float64Array>;
  static random(backend: F32Backend, arch: VqArchitecture, seed: number): VqNet<Float32Array>;
  static random(backend: VqBackend, arch: VqArchitecture, seed: number): VqNet<VqFloats>;
  static random(backend: VqBackend, arch: VqArchitecture, seed: number): VqNet<VqFloats> {
    checkBackend(backend);
    const problem = architectureProblem(arch);
    if (problem) throw new UserError(`VQ architecture: ${problem}`);
    checkInt(seed, "VQ seed", 0, Number.MAX_SAFE_INTEGER);
    return new VqNet(new (nativeAddon().VqNet)(backend, "random", arch, seed), backend);
  }

  /** LlamaGen's vq_ds16_c2i: ch 128, ch_mult 1,1,2,2,4, z 256, `codes` codes of 8. */
  static ds16(codes = 16384): VqArchitecture {
    return {
      ch: 128,
      chMult: [1, 1, 2, 2, 4],
      zChannels: 256,
      codes,
      codeDim: 8,
      encoderBlocks: 2,
      decoderBlocks: 3,
    };
  }

  /** The architecture (codes follows setCodebook). */
  get arch(): VqArchitecture {
    return { ...this.#arch, chMult: [...this.#arch.chMult] };
  }

  /** Pixels per code along a side (16). */
  get patch(): number {
    return patchOf(this.#arch);
  }

  #ready(): NativeVqNet {
    if (!this.#native) throw new UserError("VqNet: already disposed");
    return this.#native;
  }

  #checkImageSize(call: string, B: number, H: number, W: number): void {
    const p = this.patch;
    checkInt(B, `${call}: B`, 0, 1 << 20);
    for (const [name, side] of [["H", H], ["W", W]] as const) {
      checkInt(side, `${call}: ${name}`, p, 1 << 15);
      if (side % p !== 0) {
        throw new UserError(
          `${call}: image sides must be multiples of ${p} (the VQ's patch), got ${H} x ${W}`,
        );
      }
    }
  }

  #checkGrid(call: string, B: number, h: number, w: number): void {
    checkInt(B, `${call}: B`, 0, 1 << 20);
    const maxSide = Math.floor((1 << 15) / this.patch);
    checkInt(h, `${call}: h`, 1, maxSide);
    checkInt(w, `${call}: w`, 1, maxSide);
  }

  /** images (B, 3, H, W) in [-1, 1] -> latents, nearest codes and their distances. */
  async encode(
    images: Float32Array,
    B: number,
    H: number,
    W: number,
    opts: { encOut?: boolean } = {},
  ): Promise<VqEncoded<F>> {
    const native = this.#ready();
    this.#checkImageSize("encode", B, H, W);
    checkArray(images, [Float32Array], B * 3 * H * W, "encode: images", "B * 3 * H * W");
    return await native.encode(images, B, H, W, { encOut: opts.encOut ?? false }) as VqEncoded<F>;
  }

  /** indices (B, h, w) in [0, codes) -> images (B, 3, 16h, 16w), unclamped. */
  async decodeCodes(
    indices: Int32Array,
    B: number,
    h: number,
    w: number,
    opts: { intermediates?: boolean } = {},
  ): Promise<VqDecoded<F>> {
    const native = this.#ready();
    this.#checkGrid("decodeCodes", B, h, w);
    checkArray(indices, [Int32Array], B * h * w, "decodeCodes: indices", "B * h * w");
    const K = this.#arch.codes;
    for (let i = 0; i < indices.length; i++) {
      if (indices[i] < 0 || indices[i] >= K) {
        throw new UserError(
          `decodeCodes: code ${indices[i]} at position ${i} is outside the codebook [0, ${K})`,
        );
      }
    }
    const intermediates = opts.intermediates ?? false;
    return await native.decodeCodes(indices, B, h, w, { intermediates }) as VqDecoded<F>;
  }

  /** zq (B, D, h, w) (any latents, e.g. normalised codebook rows) -> images (B, 3, 16h, 16w). */
  async decodeLatents(
    zq: VqFloats,
    B: number,
    h: number,
    w: number,
    opts: { intermediates?: boolean } = {},
  ): Promise<VqDecoded<F>> {
    const native = this.#ready();
    this.#checkGrid("decodeLatents", B, h, w);
    const want = B * this.#arch.codeDim * h * w;
    checkArray(zq, [Float32Array, Float64Array], want, "decodeLatents: zq", "B * D * h * w");
    const intermediates = opts.intermediates ?? false;
    return await native.decodeLatents(zq, B, h, w, { intermediates }) as VqDecoded<F>;
  }

  /**
   * Replaces the codebook by `codebook` (K, D) rows of the model's D (any norm: they are
   * l2-normalised here), e.g. the paper's retrained 4096 codes.
   */
  setCodebook(codebook: Float32Array): void {
    const native = this.#ready();
    const D = this.#arch.codeDim;
    if (!(codebook instanceof Float32Array) || codebook.length === 0 || codebook.length % D) {
      throw new UserError(
        `setCodebook: the codebook must be a non-empty Float32Array of K * ${D} values`,
      );
    }
    if (!codebook.every(Number.isFinite)) {
      throw new UserError("setCodebook: the codebook has a non-finite value");
    }
    const K = codebook.length / D;
    checkInt(K, "setCodebook: K", 1, 1 << 24);
    native.setCodebook(codebook, K, D);
    this.#arch = { ...this.#arch, codes: K };
  }

  dispose(): void {
    this.#native?.dispose();
    this.#native = undefined;
  }
}
