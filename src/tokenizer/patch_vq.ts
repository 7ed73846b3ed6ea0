/**
 * The patch-VQ tokenizer (DESIGN.md, Tokenizer): for scale side s the image is
 * area-resized to s*p pixels and cut into p x p patches; each patch maps to its
 * nearest codebook vector (L2). One codebook serves every scale, and each scale
 * is encoded separately from the RGB image, not as a residual.
 */
import { createHash } from "node:crypto";
import { basename, dirname, join } from "node:path";
import { UserError } from "../errors.ts";
import { nearestCodes } from "../engine.ts";
import { imageAt, type ImageSet } from "../data/dataset.ts";
import { readSafetensors, writeSafetensors } from "../util/safetensors.ts";
import { fileSystemError, writeFileAtomic } from "../util/files.ts";
import { readJsonStrict } from "../util/json.ts";
import { Fields } from "../util/schema.ts";
import { checkFinite } from "../util/finite.ts";
import { MAX_CODES, MAX_IMAGE_SIDE } from "../data/shards.ts";
import { Progress } from "../util/progress.ts";
import { Rng } from "../util/rng.ts";
import { extractPatches, pastePatches } from "./patches.ts";
import { kmeans } from "./kmeans.ts";
import type { ImageTokenizer } from "./tokenizer.ts";
import type { Device } from "../engine.ts";

export const TOKENIZER_FORMAT = "checkerboard-patch-vq";

export interface TokenizerConfig {
  format: typeof TOKENIZER_FORMAT;
  version: 1;
  /** Patch side in pixels. */
  patch: number;
  /** Codebook size K. */
  codes: number;
  channels: 3;
  /** Image side in pixels the tokenizer was fitted for; the final token grid is imageSide / patch. */
  imageSide: number;
  dataset: string;
  /** Scale sides whose patches were used in the fit. */
  fitScales: number[];
  /** Short sha256 of the configuration and the codebook bytes. */
  hash: string;
  fit: { iterations: number; seed: number; patches: number; mse: number[] };
}

/** The short sha256 a tokenizer's `hash` holds: of its format, patch, codes and codebook bytes. */
export function tokenizerHash(patch: number, codes: number, codebook: Float32Array): string {
  const h = createHash("sha256");
  h.update(JSON.stringify({ format: TOKENIZER_FORMAT, patch, codes }));
  h.update(new Uint8Array(codebook.buffer, codebook.byteOffset, codebook.byteLength));
  return h.digest("hex").slice(0, 16);
}

export class PatchTokenizer implements ImageTokenizer {
  readonly kind = "patch";
  constructor(
    readonly config: TokenizerConfig,
    readonly codebook: Float32Array, // (K, p*p*3)
    /** The folder it was loaded from (as given to load), if any. */
    readonly dir?: string,
  ) {}

  get hash() {
    return this.config.hash;
  }
  get codes() {
    return this.config.codes;
  }
  get fixedSide() {
    return this.config.imageSide;
  }
  get defaultSide() {
    return this.config.imageSide;
  }
  get defaultDataset() {
    return this.config.dataset;
  }

  get patch() {
    return this.config.patch;
  }
  /** Length of a code vector (a latent): p * p * 3. */
  get dim() {
    return this.config.patch * this.config.patch * 3;
  }
  get finalSide() {
    return this.config.imageSide / this.config.patch;
  }

  /** Checks that images of `set` fit this tokenizer. */
  checkImages(set: ImageSet) {
    if (set.side !== this.config.imageSide) {
      throw new UserError(
        `dataset ${set.name} has ${set.side}px images but the tokenizer was fitted for ` +
          `${this.config.imageSide}px`,
      );
    }
  }

  /**
   * Codes of images `indices` of `set` at every scale in `scales`:
   * (indices.length, L) with L = sum s^2, scales concatenated, raster order inside a scale.
   */
  async encode(
    set: ImageSet,
    indices: Int32Array,
    scales: number[],
    device: "cpu" | "cuda",
    progress?: Progress,
  ): Promise<Uint16Array> {
    this.checkImages(set);
    const p = this.patch, d = this.dim, K = this.config.codes;
    const L = scales.reduce((a, s) => a + s * s, 0);
    const out = new Uint16Array(indices.length * L);
    const batch = 256;
    for (let start = 0; start < indices.length; start += batch) {
      const count = Math.min(batch, indices.length - start);
      const points = new Float32Array(count * L * d); // (count * L, d)
      for (let b = 0; b < count; b++) {
        let offset = b * L;
        for (const s of scales) {
          points.set(extractPatches(imageAt(set, indices[start + b]), set.side, s, p), offset * d);
          offset += s * s;
        }
      }
      const { index } = await nearestCodes(device, points, count * L, d, this.codebook, K);
      out.set(index, start * L);
      progress?.tick(count);
    }
    return out;
  }

  /** ImageTokenizer.encodeImages: the n images of `pixels` (n, side, side, 3) at every scale. */
  encodeImages(
    pixels: Uint8Array,
    n: number,
    side: number,
    scales: readonly number[],
    device: Device,
    progress?: Progress,
  ): Promise<Uint16Array> {
    const set: ImageSet = {
      name: this.config.dataset,
      classes: [],
      side,
      count: n,
      pixels,
      labels: new Int32Array(n),
    };
    return this.encode(set, Int32Array.from({ length: n }, (_, i) => i), [...scales], device, progress);
  }

  /** ImageTokenizer.decodeGrids: n grids (n, s*s) -> (n, s*p, s*p, 3). */
  decodeGrids(codes: ArrayLike<number>, n: number, s: number): Promise<Uint8Array> {
    const size = s * this.patch * s * this.patch * 3;
    const out = new Uint8Array(n * size);
    const all = Array.from(codes);
    for (let i = 0; i < n; i++) {
      out.set(this.decodeScale(all.slice(i * s * s, (i + 1) * s * s), s), i * size);
    }
    return Promise.resolve(out);
  }

  /** Decodes one scale's codes (s*s, raster order) into an (s*p, s*p, 3) image. */
  decodeScale(codes: ArrayLike<number>, s: number): Uint8Array {
    return pastePatches(codes, this.codebook, s, this.patch);
  }

  async save(dir: string) {
    // load() refuses a codebook whose hash is not the stored one; refuse to write such a pair.
    const hash = tokenizerHash(this.config.patch, this.config.codes, this.codebook);
    if (hash !== this.config.hash) {
      throw new Error(
        `PatchTokenizer.save: config.hash '${this.config.hash}' is not the codebook's hash ` +
          `${hash}; set it with tokenizerHash(patch, codes, codebook)`,
      );
    }
    await Deno.mkdir(dir, { recursive: true });
    await writeSafetensors(
      join(dir, "tokenizer.safetensors"),
      { codebook: { shape: [this.config.codes, this.dim], data: this.codebook } },
      { config: JSON.stringify(this.config) },
    );
    await writeFileAtomic(join(dir, "tokenizer.json"), JSON.stringify(this.config, null, 2) + "\n");
  }

  /**
   * Loads `dir/tokenizer.json` and `dir/tokenizer.safetensors`, checking every field, the
   * codebook's dtype, shape and values (all finite) and that the codebook has the stored hash.
   */
  static async load(path: string): Promise<PatchTokenizer> {
    const dir = await tokenizerFolder(path);
    const jsonPath = join(dir, "tokenizer.json");
    const weightsPath = join(dir, "tokenizer.safetensors");
    const config = parseTokenizerConfig(
      await readJsonStrict(jsonPath, `is ${dir} a tokenizer folder from 'tokenizer fit'?`),
      jsonPath,
    );
    const { tensors } = await readSafetensors(weightsPath);
    const codebook = tensors.codebook;
    const d = config.patch * config.patch * 3;
    if (!codebook || !(codebook.data instanceof Float32Array)) {
      throw new UserError(`${weightsPath}: no float32 tensor 'codebook'`);
    }
    if (
      codebook.shape.length !== 2 || codebook.shape[0] !== config.codes || codebook.shape[1] !== d
    ) {
      throw new UserError(
        `${weightsPath}: codebook shape [${codebook.shape}] does not match ${jsonPath} ` +
          `(codes ${config.codes}, patch ${config.patch} need [${config.codes}, ${d}])`,
      );
    }
    checkFinite(codebook.data, `${weightsPath}: tensor 'codebook'`);
    const hash = tokenizerHash(config.patch, config.codes, codebook.data);
    if (hash !== config.hash) {
      throw new UserError(
        `${weightsPath}: the codebook hashes to ${hash}, but ${jsonPath} says '${config.hash}' ` +
          `(one of the two files was changed or damaged; fit the tokenizer again)`,
      );
    }
    return new PatchTokenizer(config, codebook.data, dir);
  }
}

/**
 * The tokenizer folder `path` names: the folder itself, or the folder of its tokenizer.json or
 * tokenizer.safetensors (so either file may be given for the folder).
 */
export async function tokenizerFolder(path: string): Promise<string> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return path; // load names the missing tokenizer.json
    throw fileSystemError(err, `cannot read ${path}`);
  }
  if (info.isDirectory) return path;
  if (["tokenizer.json", "tokenizer.safetensors"].includes(basename(path))) return dirname(path);
  throw new UserError(
    `${path} is a file, not a tokenizer folder (one holding tokenizer.json and ` +
      `tokenizer.safetensors, from 'tokenizer fit')`,
  );
}

/** Checks a parsed tokenizer.json field by field (the one place this format is checked). */
export function parseTokenizerConfig(value: unknown, file: string): TokenizerConfig {
  const f = Fields.of(value, file, "a tokenizer description");
  if (f.raw("format") !== TOKENIZER_FORMAT) {
    f.fail(
      "format",
      `must be '${TOKENIZER_FORMAT}' (is this a tokenizer folder?)`,
      f.raw("format"),
    );
  }
  const version = f.int("version");
  if (version !== 1) {
    f.fail("version", "must be 1 (written by another version of checkerboard?)", version);
  }
  const imageSide = f.int("imageSide", { min: 1, max: MAX_IMAGE_SIDE });
  const patch = f.int("patch", { min: 1, max: imageSide });
  if (imageSide % patch !== 0) {
    f.fail("imageSide", `must be a multiple of 'patch' (${patch})`, imageSide);
  }
  const codes = f.int("codes", { min: 2, max: MAX_CODES });
  const channels = f.raw("channels");
  if (channels !== 3) f.fail("channels", "must be the number 3 (RGB)", channels);
  const dataset = f.string("dataset", { nonEmpty: true });
  const fitScales = f.intList("fitScales", { min: 1, max: imageSide / patch }, { minLength: 1 });
  const hash = f.string("hash", { nonEmpty: true });
  const fit = f.object("fit");
  return {
    format: TOKENIZER_FORMAT,
    version: 1,
    patch,
    codes,
    channels: 3,
    imageSide,
    dataset,
    fitScales,
    hash,
    fit: {
      iterations: fit.int("iterations", { min: 0 }),
      seed: fit.int("seed"),
      patches: fit.int("patches", { min: 0 }),
      mse: fit.numberList("mse", { min: 0 }),
    },
  };
}

export interface FitOptions {
  patch: number;
  codes: number;
  /** Scale sides whose patches train the codebook. */
  scales: number[];
  iterations: number;
  seed: number;
  /** At most this many patches enter k-means (images are subsampled). */
  maxPatches: number;
  device: "cpu" | "cuda";
  /** Training-split image indices to fit on. */
  indices: Int32Array;
  quiet?: boolean;
}

export async function fitTokenizer(set: ImageSet, opts: FitOptions): Promise<PatchTokenizer> {
  const { patch: p, codes: K, scales } = opts;
  const d = p * p * 3;
  const perImage = scales.reduce((a, s) => a + s * s, 0);
  const imageCount = Math.min(
    opts.indices.length,
    Math.max(1, Math.floor(opts.maxPatches / perImage)),
  );
  const chosen = Int32Array.from(opts.indices);
  new Rng(opts.seed).shuffle(chosen);
  const n = imageCount * perImage;
  if (n < K) {
    throw new UserError(
      `only ${n} patches to fit ${K} codes; use fewer --codes or more images`,
    );
  }
  const points = new Float32Array(n * d); // (n, d)
  const progress = new Progress("patches", imageCount, "img", { quiet: opts.quiet });
  for (let i = 0; i < imageCount; i++) {
    let offset = i * perImage;
    for (const s of scales) {
      points.set(extractPatches(imageAt(set, chosen[i]), set.side, s, p), offset * d);
      offset += s * s;
    }
    if (i % 256 === 255) progress.update(i + 1);
  }
  progress.finish();
  const { centroids, inertia } = await kmeans(points, n, d, {
    k: K,
    iterations: opts.iterations,
    seed: opts.seed,
    device: opts.device,
    quiet: opts.quiet,
  });
  const config: TokenizerConfig = {
    format: TOKENIZER_FORMAT,
    version: 1,
    patch: p,
    codes: K,
    channels: 3,
    imageSide: set.side,
    dataset: set.name,
    fitScales: scales,
    hash: tokenizerHash(p, K, centroids),
    fit: { iterations: opts.iterations, seed: opts.seed, patches: n, mse: inertia },
  };
  return new PatchTokenizer(config, centroids);
}

/** PSNR in dB between two equally sized arrays of values in [0, 1]. */
export function psnr(mse: number): number {
  return mse <= 0 ? Infinity : 10 * Math.log10(1 / mse);
}
