/**
 * What every command needs of a tokenizer, whichever kind it is (DESIGN.md, Tokenizer):
 * - `patch`: the patch VQ (k-means on p x p pixel patches; patch_vq.ts), for the small demos;
 * - `vq`: LlamaGen's convolutional VQ-16 (vq_tokenizer.ts), the paper's tokenizer.
 *
 * Both map an image side of s * patch pixels to an s x s grid of codes, encode each scale of
 * the pyramid separately from the RGB image (area-resized to s_k * patch pixels), and hand the
 * transformer a codebook of vectors (the code embeddings of paper Eq. 1).
 */
import type { Device } from "../engine.ts";
import type { Progress } from "../util/progress.ts";

export type TokenizerKind = "patch" | "vq";

export interface ImageTokenizer {
  readonly kind: TokenizerKind;
  /** The folder it was loaded from (as given to load), if any. */
  readonly dir?: string;
  /** Short sha256 of the configuration and the weights; manifests and checkpoints name it. */
  readonly hash: string;
  /** Codebook size K. */
  readonly codes: number;
  /** Pixels per code along a side: 4 for the demos' patch VQ, 16 for VQ-16. */
  readonly patch: number;
  /** Length of a code vector (the transformer's input embedding size). */
  readonly dim: number;
  /** (K, dim): the code vectors the transformer embeds (for vq: l2-normalised rows). */
  readonly codebook: Float32Array;
  /**
   * The image side the tokenizer expects when it has one (the patch VQ's fit side), else
   * undefined: the VQ accepts any multiple of `patch`.
   */
  readonly fixedSide?: number;
  /** The dataset `data` uses when --dataset is not given, if the tokenizer names one. */
  readonly defaultDataset?: string;
  /** The default image side of `data` (the patch VQ's fit side; 256 for VQ-16). */
  readonly defaultSide: number;

  /**
   * Codes of `n` RGB images at every scale in `scales`: pixels (n, side, side, 3) uint8 with
   * side = scales[last] * patch. Returns (n, L), L = sum s^2, scales concatenated coarsest
   * first, raster order inside a scale; every scale is encoded from the RGB image.
   */
  encodeImages(
    pixels: Uint8Array,
    n: number,
    side: number,
    scales: readonly number[],
    device: Device,
    progress?: Progress,
  ): Promise<Uint16Array>;

  /**
   * Decodes `n` code grids of one scale: codes (n, s*s) raster order -> n images
   * (n, s*patch, s*patch, 3) uint8 RGB.
   */
  decodeGrids(codes: ArrayLike<number>, n: number, s: number, device: Device): Promise<Uint8Array>;

  /** Writes tokenizer.json and tokenizer.safetensors into `dir` (made if missing). */
  save(dir: string): Promise<void>;
}
