/**
 * The `vq` tokenizer kind: LlamaGen's VQ-16 autoencoder (a convolutional encoder and decoder with
 * 16x downsampling and an l2-normalised codebook), run by the native engine through VqNet.
 *
 * Its folder holds tokenizer.json (architecture, source checkpoint, codebook origin, hash) and
 * tokenizer.safetensors (every network tensor under LlamaGen's key names, float32; the codebook,
 * as stored, under quantize.embedding.weight). Each scale of the pyramid is encoded separately
 * from the RGB image, area-resized to s * 16 pixels (paper section 3.3).
 */
import { createHash } from "node:crypto";
import { basename, join } from "node:path";
import { UserError } from "../errors.ts";
import type { Device } from "../engine.ts";
import { readFileOrFail, writeFileAtomic } from "../util/files.ts";
import { readJsonStrict } from "../util/json.ts";
import { Fields } from "../util/schema.ts";
import { checkFinite } from "../util/finite.ts";
import { readSafetensors, writeSafetensors } from "../util/safetensors.ts";
import type { Progress } from "../util/progress.ts";
import { decodeTorchCheckpoint, type TorchTensor } from "./torch_checkpoint.ts";
import { resizeArea } from "./resize.ts";
import {
  architectureProblem,
  checkShapes,
  CODEBOOK_KEY,
  deriveArchitecture,
  patchOf,
  type VqArchitecture,
  vqTensorShapes,
} from "./vq_architecture.ts";
import type { VqNet } from "./vq_net.ts";
import type { ImageTokenizer } from "./tokenizer.ts";

export const VQ_TOKENIZER_FORMAT = "checkerboard-vq";

/** How the codebook of a retrained tokenizer was fitted (paper section 4.1). */
export interface RetrainedCodebook {
  origin: "retrained";
  codes: number;
  iterations: number;
  seed: number;
  dataset: string;
  images: number;
  /** Image sides in pixels the latents came from. */
  sides: { min: number; max: number };
  /** Latent vectors the codebook was fitted on. */
  latents: number;
  objective: string;
  /** Mean |z/|z| - e|^2 over the fitted latents with the codebook before and after. */
  latentErrorBefore: number;
  latentErrorAfter: number;
  perSide: { side: number; latents: number; before: number; after: number }[];
  /** The same error on latents of validation images the fit never saw (null: none readable). */
  heldOut: { images: number; latents: number; before: number; after: number } | null;
}

/** imported: as in the source checkpoint; trained: learned with the network (tokenizer train). */
export type CodebookOrigin = { origin: "imported" } | { origin: "trained" } | RetrainedCodebook;

/** Where the network came from: LlamaGen's checkpoint, or this tool's `tokenizer train`. */
export type VqSource =
  | { kind: "llamagen"; file: string; sha256: string }
  | {
    kind: "trained";
    /** The dataset spec, its image side and the scales it was trained on. */
    dataset: string;
    side: number;
    scales: number[];
    /** Optimizer steps done when these weights were written. */
    steps: number;
    seed: number;
  };

export interface VqTokenizerConfig {
  format: typeof VQ_TOKENIZER_FORMAT;
  version: 1;
  architecture: VqArchitecture;
  codes: number;
  codeDim: number;
  patch: number;
  source: VqSource;
  codebook: CodebookOrigin;
  /** Short sha256 of the architecture and every tensor (vqTensorHash). */
  hash: string;
}

/** The network's tensors by LlamaGen's key names, in vqTensorShapes order. */
export type VqTensors = Record<string, TorchTensor>;

/** Pixels of input the encoder and decoder see per native call (four 256 px images). */
const PIXELS_PER_BATCH = 4 * 256 * 256;
/** Images resized and converted at a time by encodeImages (bounds its float buffers). */
const IMAGES_PER_CHUNK = 32;

/** Short sha256 of the architecture json and every tensor's name and bytes, in key order. */
export function vqTensorHash(arch: VqArchitecture, tensors: VqTensors): string {
  const h = createHash("sha256");
  h.update(JSON.stringify(arch));
  for (const [key] of vqTensorShapes(arch)) {
    const { data } = tensors[key];
    h.update(key);
    h.update(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
  return h.digest("hex").slice(0, 16);
}

/** Rows of `book` (K, D) divided by max(|row|, 1e-12), as LlamaGen's l2 quantiser does. */
export function normaliseRows(book: Float32Array, K: number, D: number): Float32Array {
  const out = new Float32Array(K * D); // (K, D)
  for (let k = 0; k < K; k++) {
    let norm = 0;
    for (let d = 0; d < D; d++) norm += book[k * D + d] ** 2;
    const scale = 1 / Math.max(Math.sqrt(norm), 1e-12);
    for (let d = 0; d < D; d++) out[k * D + d] = book[k * D + d] * scale;
  }
  return out;
}

/** Images per native call for images of `px` pixels along a side. */
export function batchFor(px: number): number {
  return Math.max(1, Math.floor(PIXELS_PER_BATCH / (px * px)));
}

/**
 * `count` RGB images (count, side, side, 3) u8, area-resized to `to` px, as the encoder's input
 * (count, 3, to, to) in [-1, 1]: u8 / 127.5 - 1 (LlamaGen's vq_demo.py convention). Without a
 * resize the value is computed from the byte in double precision and rounded once, as the
 * fixture's images_f32 are. Written into `into` when given (at least count * 3 * to^2 values: a
 * caller that converts batch after batch reuses one buffer), else into a new array.
 */
export function imagesToInput(
  pixels: Uint8Array, // (count, side, side, 3)
  count: number,
  side: number,
  to: number,
  into?: Float32Array,
): Float32Array {
  const plane = to * to;
  const out = into ? into.subarray(0, count * 3 * plane) : new Float32Array(count * 3 * plane); // (count, 3, to, to)
  for (let b = 0; b < count; b++) {
    const rgb = pixels.subarray(b * side * side * 3, (b + 1) * side * side * 3);
    const base = b * 3 * plane;
    if (to === side) {
      for (let p = 0; p < plane; p++) {
        for (let c = 0; c < 3; c++) out[base + c * plane + p] = rgb[p * 3 + c] / 127.5 - 1;
      }
    } else {
      const resized = resizeArea(rgb, side, to); // (to, to, 3) in [0, 1]
      for (let p = 0; p < plane; p++) {
        for (let c = 0; c < 3; c++) out[base + c * plane + p] = resized[p * 3 + c] * 2 - 1;
      }
    }
  }
  return out;
}

/**
 * Decoder output (count, 3, px, px), unclamped, as (count, px, px, 3) u8 with LlamaGen
 * sample_c2i's convention (torchvision save_image): clamp((y + 1) / 2, 0, 1) * 255 + 0.5, truncated.
 */
export function outputToPixels(images: Float32Array, count: number, px: number): Uint8Array {
  const plane = px * px;
  const out = new Uint8Array(count * plane * 3); // (count, px, px, 3)
  for (let b = 0; b < count; b++) {
    for (let c = 0; c < 3; c++) {
      const from = (b * 3 + c) * plane;
      for (let p = 0; p < plane; p++) {
        const unit = Math.min(1, Math.max(0, (images[from + p] + 1) / 2));
        out[(b * plane + p) * 3 + c] = Math.trunc(unit * 255 + 0.5);
      }
    }
  }
  return out;
}

export class VqTokenizer implements ImageTokenizer {
  readonly kind = "vq";
  readonly fixedSide = undefined;
  private readonly nets = new Map<Device, Promise<VqNet>>();
  private normalised?: Float32Array;
  private queue: Promise<void> = Promise.resolve();
  /** encodeImages' input buffer (chunk, 3, px, px), kept for its next call. */
  private spareInput?: Float32Array;

  constructor(
    readonly config: VqTokenizerConfig,
    readonly tensors: VqTensors,
    /** The folder it was loaded from (as given to load), if any. */
    readonly dir?: string,
  ) {}

  get hash() {
    return this.config.hash;
  }
  /** The image side of `data` and `recon` by default: a trained one's, else LlamaGen's 256. */
  get defaultSide(): number {
    return this.config.source.kind === "trained" ? this.config.source.side : 256;
  }
  /** The dataset a trained tokenizer learned from (none for an imported one). */
  get defaultDataset(): string | undefined {
    return this.config.source.kind === "trained" ? this.config.source.dataset : undefined;
  }
  get codes() {
    return this.config.codes;
  }
  get patch() {
    return this.config.patch;
  }
  get dim() {
    return this.config.codeDim;
  }
  get architecture() {
    return this.config.architecture;
  }

  /** (K, D): the l2-normalised codebook rows (what the quantiser matches and the decoder gets). */
  get codebook(): Float32Array {
    this.normalised ??= normaliseRows(this.tensors[CODEBOOK_KEY].data, this.codes, this.dim);
    return this.normalised;
  }

  /** The native network for `device`, made on first use and kept. */
  net(device: Device): Promise<VqNet> {
    let net = this.nets.get(device);
    if (!net) {
      net = import("./vq_net.ts").then(({ VqNet }) =>
        VqNet.fromTensors(device, this.tensors, this.dir ?? "the VQ tokenizer")
      );
      this.nets.set(device, net);
      net.catch(() => this.nets.delete(device)); // a failed start is tried again next time
    }
    return net;
  }

  /**
   * Runs native calls one after another: a VqNet refuses a call while another is in flight, and
   * two commands' callers (e.g. decoding while encoding) may share one tokenizer.
   */
  private serially<T>(call: () => Promise<T>): Promise<T> {
    const result = this.queue.then(call);
    this.queue = result.then(() => {}, () => {});
    return result;
  }

  /** Frees the native networks (they are made again on the next use). */
  dispose() {
    for (const net of this.nets.values()) net.then((n) => n.dispose(), () => {});
    this.nets.clear();
  }

  /**
   * Pre-quantisation latents h = quant_conv(encoder(x)) of images already in the encoder's input
   * form (count, 3, px, px): (count, D, px/16, px/16), with the nearest codes (count, px/16, px/16).
   * Runs in batches of at most PIXELS_PER_BATCH input pixels.
   */
  async encodeInput(
    input: Float32Array, // (count, 3, px, px)
    count: number,
    px: number,
    device: Device,
  ): Promise<{ latent: Float32Array; indices: Int32Array }> {
    const s = px / this.patch, D = this.dim;
    const latent = new Float32Array(count * D * s * s); // (count, D, s, s)
    const indices = new Int32Array(count * s * s); // (count, s, s)
    const net = await this.net(device);
    const batch = batchFor(px);
    for (let start = 0; start < count; start += batch) {
      const b = Math.min(batch, count - start);
      const part = input.subarray(start * 3 * px * px, (start + b) * 3 * px * px);
      const r = await this.serially(() => net.encode(part, b, px, px));
      latent.set(r.latent, start * D * s * s);
      indices.set(r.indices, start * s * s);
    }
    return { latent, indices };
  }

  /** ImageTokenizer.encodeImages: every scale encoded from the RGB image, resized to s * 16 px. */
  async encodeImages(
    pixels: Uint8Array,
    n: number,
    side: number,
    scales: readonly number[],
    device: Device,
    progress?: Progress,
  ): Promise<Uint16Array> {
    if (pixels.length !== n * side * side * 3) {
      throw new Error(`encodeImages: ${pixels.length} bytes are not ${n} images of ${side}px`);
    }
    const last = scales[scales.length - 1];
    if (last * this.patch !== side) {
      throw new UserError(
        `the VQ tokenizer encodes ${side}px images at a final scale of ${side / this.patch} ` +
          `(${this.patch} px per code), but the scales end at ${last}`,
      );
    }
    const L = scales.reduce((a, s) => a + s * s, 0);
    const out = new Uint16Array(n * L); // (n, L)
    // One input buffer for every chunk and scale, kept between calls: a streaming run calls
    // this batch after batch, and tens of MB of garbage per call would leave its peak memory
    // to the GC's timing. Taken while in use, so concurrent calls never share it.
    const need = Math.min(n, IMAGES_PER_CHUNK) * 3 * side * side;
    let input = this.spareInput;
    this.spareInput = undefined;
    if (input === undefined || input.length < need) input = new Float32Array(need);
    for (let start = 0; start < n; start += IMAGES_PER_CHUNK) {
      const count = Math.min(IMAGES_PER_CHUNK, n - start);
      const chunk = pixels.subarray(start * side * side * 3, (start + count) * side * side * 3);
      let offset = 0; // where scale s starts inside a row of L codes
      for (const s of scales) {
        const px = s * this.patch;
        const { indices } = await this.encodeInput(
          imagesToInput(chunk, count, side, px, input),
          count,
          px,
          device,
        );
        for (let b = 0; b < count; b++) {
          out.set(indices.subarray(b * s * s, (b + 1) * s * s), (start + b) * L + offset);
        }
        offset += s * s;
      }
      progress?.tick(count);
    }
    this.spareInput = input;
    return out;
  }

  /** ImageTokenizer.decodeGrids: n grids (n, s*s) through the decoder -> (n, 16s, 16s, 3) u8. */
  async decodeGrids(
    codes: ArrayLike<number>,
    n: number,
    s: number,
    device: Device,
  ): Promise<Uint8Array> {
    if (codes.length !== n * s * s) {
      throw new Error(`decodeGrids: ${codes.length} codes are not ${n} grids of ${s}x${s}`);
    }
    const K = this.codes;
    const indices = new Int32Array(n * s * s); // (n, s, s)
    for (let i = 0; i < indices.length; i++) {
      const c = codes[i];
      if (!Number.isInteger(c) || c < 0 || c >= K) {
        throw new UserError(`code ${c} at position ${i} is not one of the tokenizer's ${K} codes`);
      }
      indices[i] = c;
    }
    const px = s * this.patch;
    const out = new Uint8Array(n * px * px * 3); // (n, px, px, 3)
    const net = await this.net(device);
    const batch = batchFor(px);
    for (let start = 0; start < n; start += batch) {
      const b = Math.min(batch, n - start);
      const { images } = await this.serially(() =>
        net.decodeCodes(
          indices.subarray(start * s * s, (start + b) * s * s),
          b,
          s,
          s,
        )
      ); // (b, 3, px, px)
      out.set(outputToPixels(images, b, px), start * px * px * 3);
    }
    return out;
  }

  /**
   * A tokenizer with the same encoder and decoder and the codebook `book` (K', D) (stored as
   * given), described by `origin`; its hash is computed anew.
   */
  withCodebook(book: Float32Array, codes: number, origin: RetrainedCodebook): VqTokenizer {
    const architecture = { ...this.architecture, codes };
    const tensors: VqTensors = {};
    for (const [key, shape] of vqTensorShapes(architecture)) {
      tensors[key] = key === CODEBOOK_KEY ? { shape, data: book } : this.tensors[key];
    }
    const config: VqTokenizerConfig = {
      ...this.config,
      architecture,
      codes,
      codebook: origin,
      hash: vqTensorHash(architecture, tensors),
    };
    return new VqTokenizer(config, tensors);
  }

  async save(dir: string) {
    // load() refuses tensors whose hash is not the stored one; refuse to write such a pair.
    const hash = vqTensorHash(this.architecture, this.tensors);
    if (hash !== this.config.hash) {
      throw new Error(
        `VqTokenizer.save: config.hash '${this.config.hash}' is not the tensors' ${hash}`,
      );
    }
    await Deno.mkdir(dir, { recursive: true });
    const tensors: Record<string, TorchTensor> = {};
    for (const [key] of vqTensorShapes(this.architecture)) tensors[key] = this.tensors[key];
    await writeSafetensors(join(dir, "tokenizer.safetensors"), tensors, {
      format: VQ_TOKENIZER_FORMAT,
      hash,
    });
    await writeFileAtomic(join(dir, "tokenizer.json"), JSON.stringify(this.config, null, 2) + "\n");
  }

  /**
   * Loads `dir/tokenizer.json` and `dir/tokenizer.safetensors`, checking every field, every
   * tensor's dtype and shape against the architecture, that all values are finite, and the hash.
   */
  static async load(dir: string): Promise<VqTokenizer> {
    const jsonPath = join(dir, "tokenizer.json");
    const weightsPath = join(dir, "tokenizer.safetensors");
    const config = parseVqTokenizerConfig(
      await readJsonStrict(jsonPath, `is ${dir} a tokenizer folder from 'tokenizer import'?`),
      jsonPath,
    );
    const { tensors: stored } = await readSafetensors(weightsPath);
    const shapes: Record<string, number[]> = {};
    for (const [key, t] of Object.entries(stored)) {
      if (!(t.data instanceof Float32Array)) {
        throw new UserError(`${weightsPath}: tensor '${key}' is not float32`);
      }
      shapes[key] = t.shape;
    }
    checkShapes(config.architecture, shapes, weightsPath);
    const tensors: VqTensors = {};
    for (const [key, shape] of vqTensorShapes(config.architecture)) {
      const data = stored[key].data as Float32Array;
      checkFinite(data, `${weightsPath}: tensor '${key}'`);
      tensors[key] = { shape, data };
    }
    const hash = vqTensorHash(config.architecture, tensors);
    if (hash !== config.hash) {
      throw new UserError(
        `${weightsPath}: the tensors hash to ${hash}, but ${jsonPath} says '${config.hash}' ` +
          `(one of the two files was changed or damaged; import the checkpoint again)`,
      );
    }
    return new VqTokenizer(config, tensors, dir);
  }

  /**
   * A tokenizer from LlamaGen's released checkpoint (vq_ds16_c2i.pt, or any VQ model of
   * vq_model.py): the architecture derived from its shapes and checked, every tensor finite,
   * the training-only quantize.codebook_used dropped.
   */
  static async importLlamagen(file: string): Promise<VqTokenizer> {
    const bytes = await readFileOrFail(file);
    const state = decodeTorchCheckpoint(bytes, file);
    const shapes = Object.fromEntries(Object.entries(state).map(([k, t]) => [k, t.shape]));
    const architecture = deriveArchitecture(shapes, file);
    const tensors: VqTensors = {};
    for (const [key] of vqTensorShapes(architecture)) {
      checkFinite(state[key].data, `${file}: tensor '${key}'`);
      tensors[key] = state[key];
    }
    const config: VqTokenizerConfig = {
      format: VQ_TOKENIZER_FORMAT,
      version: 1,
      architecture,
      codes: architecture.codes,
      codeDim: architecture.codeDim,
      patch: patchOf(architecture),
      source: {
        kind: "llamagen",
        file: basename(file),
        sha256: createHash("sha256").update(bytes).digest("hex"),
      },
      codebook: { origin: "imported" },
      hash: vqTensorHash(architecture, tensors),
    };
    return new VqTokenizer(config, tensors);
  }
}

/** Field `key` of `f` as an architecture, every number checked and the whole possible. */
export function parseArchitecture(f: Fields, key: string): VqArchitecture {
  const a = f.object(key);
  const architecture: VqArchitecture = {
    ch: a.int("ch", { min: 1 }),
    chMult: a.intList("chMult", { min: 1 }, { minLength: 1 }),
    zChannels: a.int("zChannels", { min: 1 }),
    codes: a.int("codes", { min: 2 }),
    codeDim: a.int("codeDim", { min: 1 }),
    encoderBlocks: a.int("encoderBlocks", { min: 1 }),
    decoderBlocks: a.int("decoderBlocks", { min: 1 }),
  };
  const problem = architectureProblem(architecture);
  if (problem) f.fail(key, `is impossible: ${problem}`);
  return architecture;
}

/** Checks a parsed vq tokenizer.json field by field (the one place this format is checked). */
export function parseVqTokenizerConfig(value: unknown, file: string): VqTokenizerConfig {
  const f = Fields.of(value, file, "a tokenizer description");
  if (f.raw("format") !== VQ_TOKENIZER_FORMAT) {
    f.fail(
      "format",
      `must be '${VQ_TOKENIZER_FORMAT}' (is this a tokenizer folder?)`,
      f.raw("format"),
    );
  }
  const version = f.int("version");
  if (version !== 1) {
    f.fail("version", "must be 1 (written by another version of checkerboard?)", version);
  }
  const architecture = parseArchitecture(f, "architecture");
  const codes = f.int("codes");
  if (codes !== architecture.codes) {
    f.fail("codes", `must equal 'architecture.codes' (${architecture.codes})`, codes);
  }
  const codeDim = f.int("codeDim");
  if (codeDim !== architecture.codeDim) {
    f.fail("codeDim", `must equal 'architecture.codeDim' (${architecture.codeDim})`, codeDim);
  }
  const patch = f.int("patch");
  if (patch !== patchOf(architecture)) {
    f.fail(
      "patch",
      `must be ${patchOf(architecture)} for ${architecture.chMult.length} levels`,
      patch,
    );
  }
  const source = parseSource(f.object("source"));
  const hash = f.string("hash", { nonEmpty: true });
  return {
    format: VQ_TOKENIZER_FORMAT,
    version: 1,
    architecture,
    codes,
    codeDim,
    patch,
    source,
    codebook: parseCodebookOrigin(f.object("codebook"), codes),
    hash,
  };
}

function parseSource(s: Fields): VqSource {
  const kind = s.choice("kind", ["llamagen", "trained"] as const);
  if (kind === "trained") {
    return {
      kind,
      dataset: s.string("dataset", { nonEmpty: true }),
      side: s.int("side", { min: 1 }),
      scales: s.intList("scales", { min: 1 }, { minLength: 1 }),
      steps: s.int("steps", { min: 0 }),
      seed: s.int("seed", { min: 0 }),
    };
  }
  const source = {
    kind,
    file: s.string("file", { nonEmpty: true }),
    sha256: s.string("sha256", { nonEmpty: true }),
  };
  if (!/^[0-9a-f]{64}$/.test(source.sha256)) {
    s.fail("sha256", "must be 64 lowercase hex digits", source.sha256);
  }
  return source;
}

function parseCodebookOrigin(c: Fields, codes: number): CodebookOrigin {
  const origin = c.choice("origin", ["imported", "trained", "retrained"] as const);
  if (origin === "imported" || origin === "trained") return { origin };
  const retrainedCodes = c.int("codes");
  if (retrainedCodes !== codes) {
    c.fail("codes", `must equal the tokenizer's 'codes' (${codes})`, retrainedCodes);
  }
  const sides = c.object("sides");
  const min = sides.int("min", { min: 1 });
  return {
    origin,
    codes,
    iterations: c.int("iterations", { min: 0 }),
    seed: c.int("seed", { min: 0 }),
    dataset: c.string("dataset", { nonEmpty: true }),
    images: c.int("images", { min: 1 }),
    sides: { min, max: sides.int("max", { min }) },
    latents: c.int("latents", { min: 1 }),
    objective: c.string("objective", { nonEmpty: true }),
    latentErrorBefore: c.number("latentErrorBefore", { min: 0 }),
    latentErrorAfter: c.number("latentErrorAfter", { min: 0 }),
    perSide: c.objectList("perSide", (p) => ({
      side: p.int("side", { min: 1 }),
      latents: p.int("latents", { min: 1 }),
      before: p.number("before", { min: 0 }),
      after: p.number("after", { min: 0 }),
    })),
    heldOut: c.raw("heldOut") === null ? null : (() => {
      const h = c.object("heldOut");
      return {
        images: h.int("images", { min: 1 }),
        latents: h.int("latents", { min: 1 }),
        before: h.number("before", { min: 0 }),
        after: h.number("after", { min: 0 }),
      };
    })(),
  };
}
