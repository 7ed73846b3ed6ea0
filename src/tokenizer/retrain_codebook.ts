/**
 * Retraining the VQ codebook alone (paper section 4.1): the encoder and decoder stay frozen; the
 * pre-quantisation latents h = quant_conv(encoder(x)) of training images at random sides are
 * l2-normalised, and a new codebook of K unit vectors is fitted to them by spherical k-means.
 *
 * Why spherical k-means: LlamaGen's quantiser normalises both the latent and the codebook rows
 * and picks argmin |z/|z| - e/|e||^2 = argmin (2 - 2 cos). So the error the quantiser makes at
 * encode time is sum_i |u_i - e_c(i)|^2 over unit latents u_i, with unit codes e. Spherical
 * k-means minimises exactly that objective under the constraint |e| = 1: its assignment step is
 * the quantiser's own rule (nearest unit code in L2, = largest cosine), and its update step,
 * e_c = normalise(sum of the members of c), is the minimiser of sum |u_i - e|^2 over unit e
 * (|u - e|^2 = 2 - 2 u.e, so it maximises e . sum u_i). Plain k-means would fit centroids of
 * norm < 1 that the quantiser then renormalises, which is no longer the fitted optimum.
 */
import { type Device, nearestCodes } from "../engine.ts";
import { UserError } from "../errors.ts";
import { Progress } from "../util/progress.ts";
import { deriveSeed, Rng } from "../util/rng.ts";
import { farthestPoints, kmeansPlusPlus, sampleRows, sumClusters } from "./kmeans.ts";
import type { SizedImages } from "./retrain_images.ts";
import {
  batchFor,
  normaliseRows,
  type RetrainedCodebook,
  type VqTokenizer,
} from "./vq_tokenizer.ts";

export const RETRAIN_OBJECTIVE =
  "spherical k-means: minimise the mean |z/|z| - e|^2 over l2-normalised latents z, |e| = 1 " +
  "(the l2 quantiser's own nearest-code rule)";

export interface RetrainOptions {
  codes: number;
  /** Image sides (pixels, multiples of the tokenizer's patch) drawn uniformly from [min, max]. */
  minSide: number;
  maxSide: number;
  /** Training images used (at most the split's size). */
  images: number;
  iterations: number;
  seed: number;
  /** At most this many latents enter k-means (an evenly spread deterministic subset). */
  maxLatents: number;
  device: Device;
  quiet?: boolean;
  /** Told, once the images and their sides are drawn, how many latents the fit will see. */
  onPlan?: (plan: { images: number; latents: number; positions: number }) => void;
}

/** Unit latents (n, D), each tagged with the side bucket its image was read at. */
export interface LatentSet {
  unit: Float32Array; // (n, D)
  n: number;
  bucket: Uint8Array; // (n) index into sides
  sides: number[];
}

/** Images read (and decoded) at once while extracting latents. */
const MAX_IMAGES_PER_BATCH = 32;
/** k-means++ seeding runs on a random sample of this many latents (at least 4 K). */
const SEEDING_SAMPLE = 20000;

/** Which images extractLatents reads, and how many latents it keeps. */
export interface LatentDraw {
  /** Image indices to draw from (a split). */
  pool: Int32Array;
  /** Images drawn (at most the pool's size). */
  count: number;
  seed: number;
  maxLatents: number;
  /** Fewer latents than this (known before reading) is an error: the codebook size. */
  minLatents: number;
  /** Progress label. */
  label: string;
}

/**
 * Latents of `draw.count` images of `draw.pool` (seeded choice) at seeded random sides
 * between opts.minSide and opts.maxSide: encoder -> quant_conv -> l2-normalised, at most
 * `draw.maxLatents` of them (every position of every image when they fit, else an evenly spaced
 * subset of the positions in processing order).
 */
export async function extractLatents(
  tokenizer: VqTokenizer,
  images: SizedImages,
  draw: LatentDraw,
  opts: Pick<RetrainOptions, "minSide" | "maxSide" | "device" | "quiet" | "onPlan">,
): Promise<LatentSet & { images: number }> {
  const p = tokenizer.patch, D = tokenizer.dim;
  const rng = new Rng(draw.seed);
  const chosen = Int32Array.from(draw.pool);
  rng.shuffle(chosen);
  const count = Math.min(draw.count, chosen.length);
  if (count === 0) throw new UserError(`${images.name}: no training images to retrain on`);
  const sides: number[] = [];
  for (let s = opts.minSide; s <= opts.maxSide; s += p) sides.push(s);
  const sideOf = Uint8Array.from({ length: count }, () => rng.int(sides.length)); // bucket
  // Processing order: by side, so that one native call encodes images of one size.
  const order = Array.from({ length: count }, (_, i) => i).sort((a, b) =>
    sideOf[a] - sideOf[b] || a - b
  );
  const total = order.reduce((a, i) => a + (sides[sideOf[i]] / p) ** 2, 0);
  const n = Math.min(total, draw.maxLatents);
  // Known before any image is read: refused at once rather than after minutes of encoding.
  if (n < draw.minLatents) throw tooFewLatents(n, draw.minLatents);
  opts.onPlan?.({ images: count, latents: n, positions: total });
  // Position j (of `total`, in processing order) is kept when it starts a new step of n/total.
  const kept = (j: number) => Math.floor(((j + 1) * n) / total) > Math.floor((j * n) / total);

  const unit = new Float32Array(n * D); // (n, D)
  const bucket = new Uint8Array(n);
  const progress = new Progress(draw.label, count, "img", { quiet: opts.quiet });
  let position = 0, filled = 0, skipped = 0;
  for (let start = 0; start < count;) {
    const k = sideOf[order[start]], side = sides[k], s = side / p;
    let b = 1;
    const most = Math.min(MAX_IMAGES_PER_BATCH, batchFor(side));
    while (b < most && start + b < count && sideOf[order[start + b]] === k) b++;
    const parts = await Promise.all(
      Array.from({ length: b }, (_, j) => readOrSkip(images, chosen[order[start + j]], side)),
    );
    const good = parts.filter((part) => part !== null);
    skipped += b - good.length;
    const batchInput = new Float32Array(good.length * 3 * side * side); // (good, 3, side, side)
    good.forEach((part, j) => batchInput.set(part, j * 3 * side * side));
    const { latent } = good.length // (good, D, s, s)
      ? await tokenizer.encodeInput(batchInput, good.length, side, opts.device)
      : { latent: new Float32Array(0) };
    let img = 0; // index among the good images of the batch
    for (const part of parts) {
      if (part === null) { // an unreadable file: its positions are passed over
        position += s * s;
        continue;
      }
      for (let q = 0; q < s * s; q++, position++) {
        if (!kept(position)) continue;
        // (D) latent at position q, strided by s*s in NCHW; stored as a unit row.
        let norm = 0;
        for (let d = 0; d < D; d++) norm += latent[(img * D + d) * s * s + q] ** 2;
        const scale = 1 / Math.max(Math.sqrt(norm), 1e-12);
        for (let d = 0; d < D; d++) {
          unit[filled * D + d] = latent[(img * D + d) * s * s + q] * scale;
        }
        bucket[filled++] = k;
      }
      img++;
    }
    start += b;
    progress.tick(b, `${side}px, ${filled} latents`);
  }
  progress.finish();
  if (skipped > 0) console.error(`warning: skipped ${skipped} unreadable image(s) of ${images.name}`);
  if (filled === 0) throw new UserError(`${images.name}: no readable image to retrain on`);
  return {
    unit: unit.subarray(0, filled * D),
    n: filled,
    bucket: bucket.subarray(0, filled),
    sides,
    images: count - skipped,
  };
}

function tooFewLatents(n: number, K: number): UserError {
  return new UserError(
    `only ${n} latents to fit ${K} codes; use fewer --codes, more --images or larger sides ` +
      `(--min-side, --max-side)`,
  );
}

/**
 * Image `i` at `side`, or null (with a warning naming the file) when a folder's file cannot be
 * decoded: a damaged file among a million is skipped, as `data` skips it.
 */
async function readOrSkip(images: SizedImages, i: number, side: number) {
  try {
    return await images.read(i, side);
  } catch (err) {
    if (!(err instanceof UserError) || !images.skipsUnreadable) throw err;
    console.error(`warning: skipped ${err.message}`);
    return null;
  }
}

/** |u_i - e|^2 of each unit latent to its nearest unit code of `book` (K, D), clamped at 0. */
async function quantisationErrors(
  set: LatentSet,
  D: number,
  book: Float32Array,
  K: number,
  device: Device,
): Promise<{ index: Int32Array; dist2: Float32Array }> {
  const { index, dist2 } = await nearestCodes(device, set.unit, set.n, D, book, K);
  for (let i = 0; i < dist2.length; i++) if (dist2[i] < 0) dist2[i] = 0; // rounding below 0
  return { index, dist2 };
}

/**
 * Spherical k-means of the unit rows (n, D) into K unit centroids: k-means++ seeding on a
 * sample, then `iterations` rounds of (assign on the engine, centroid = normalise(sum of its
 * members)). An empty cluster restarts at the latents farthest from their codes.
 */
export async function sphericalKMeans(
  set: LatentSet,
  D: number,
  K: number,
  opts: { iterations: number; seed: number; device: Device; quiet?: boolean },
): Promise<Float32Array> {
  const { n, unit } = set;
  const rng = new Rng(deriveSeed(opts.seed, 1));
  const sampleSize = Math.min(n, Math.max(SEEDING_SAMPLE, 4 * K));
  const sample = sampleRows(unit, n, D, sampleSize, rng); // (sampleSize, D)
  // Squared L2 between unit vectors is 2 - 2 cos, so k-means++'s D^2 weighting is the spherical one.
  let centroids = normaliseRows(kmeansPlusPlus(sample, sampleSize, D, K, rng), K, D); // (K, D)
  const sums = new Float64Array(K * D); // (K, D)
  const counts = new Int32Array(K);
  const progress = new Progress("k-means", opts.iterations, "iter", { quiet: opts.quiet });
  for (let it = 0; it < opts.iterations; it++) {
    const { index, dist2 } = await quantisationErrors(set, D, centroids, K, opts.device);
    const total = sumClusters(unit, n, D, index, dist2, sums, counts);
    const next = new Float32Array(K * D); // (K, D)
    const empty: number[] = [];
    for (let c = 0; c < K; c++) {
      let norm = 0;
      for (let d = 0; d < D; d++) norm += sums[c * D + d] ** 2;
      // A cluster whose members cancel out has no direction: treated as empty.
      if (counts[c] === 0 || norm < 1e-24) {
        empty.push(c);
        continue;
      }
      const scale = 1 / Math.sqrt(norm);
      for (let d = 0; d < D; d++) next[c * D + d] = sums[c * D + d] * scale;
    }
    farthestPoints(dist2, empty.length).forEach((from, e) => {
      next.set(unit.subarray(from * D, (from + 1) * D), empty[e] * D);
    });
    centroids = next;
    progress.tick(
      1,
      `error ${(total / n).toExponential(4)}${empty.length ? `, reseeded ${empty.length}` : ""}`,
    );
  }
  progress.finish();
  return centroids;
}

/** Mean of `values` per bucket of `set` and overall. */
function meansPerSide(set: LatentSet, values: Float32Array) {
  const sum = new Float64Array(set.sides.length), count = new Int32Array(set.sides.length);
  let all = 0;
  for (let i = 0; i < set.n; i++) {
    sum[set.bucket[i]] += values[i];
    count[set.bucket[i]]++;
    all += values[i];
  }
  return {
    perSide: Array.from(sum, (s, k) => (count[k] ? s / count[k] : NaN)),
    count,
    all: all / set.n,
  };
}

/**
 * Paper section 4.1: a tokenizer with the same frozen encoder and decoder and a new codebook of
 * `opts.codes` unit vectors fitted to latents of `images`, with the latent error of the old and
 * the new codebook per image side.
 */
export async function retrainCodebook(
  tokenizer: VqTokenizer,
  images: SizedImages,
  opts: RetrainOptions,
): Promise<{ tokenizer: VqTokenizer; report: RetrainedCodebook }> {
  const D = tokenizer.dim, K = opts.codes;
  const latents = await extractLatents(tokenizer, images, {
    pool: images.train,
    count: opts.images,
    seed: opts.seed,
    maxLatents: opts.maxLatents,
    minLatents: K,
    label: "latents",
  }, opts);
  if (latents.n < K) throw tooFewLatents(latents.n, K); // unreadable images were skipped
  const oldBook = tokenizer.codebook, oldK = tokenizer.codes;
  const before = await quantisationErrors(latents, D, oldBook, oldK, opts.device);
  const book = await sphericalKMeans(latents, D, K, opts);
  const after = await quantisationErrors(latents, D, book, K, opts.device);
  // The same measure on validation images the fit never saw, in proportion to the split (1:9).
  const heldOut = await extractLatents(tokenizer, images, {
    pool: images.val,
    count: Math.max(1, Math.round(latents.images / 9)),
    seed: deriveSeed(opts.seed, 2),
    maxLatents: Math.max(1, Math.round(opts.maxLatents / 9)),
    minLatents: 1,
    label: "held-out latents",
  }, { ...opts, onPlan: undefined }).catch((err) => {
    if (err instanceof UserError) return null; // no readable validation image
    throw err;
  });
  const heldOutError = async (book: Float32Array, K: number) =>
    meansPerSide(heldOut!, (await quantisationErrors(heldOut!, D, book, K, opts.device)).dist2).all;
  const b = meansPerSide(latents, before.dist2), a = meansPerSide(latents, after.dist2);
  const report: RetrainedCodebook = {
    origin: "retrained",
    codes: K,
    iterations: opts.iterations,
    seed: opts.seed,
    dataset: images.name,
    images: latents.images,
    sides: { min: opts.minSide, max: opts.maxSide },
    latents: latents.n,
    objective: RETRAIN_OBJECTIVE,
    latentErrorBefore: b.all,
    latentErrorAfter: a.all,
    perSide: latents.sides
      .map((side, k) => ({ side, latents: b.count[k], before: b.perSide[k], after: a.perSide[k] }))
      .filter((x) => x.latents > 0),
    heldOut: heldOut && {
      images: heldOut.images,
      latents: heldOut.n,
      before: await heldOutError(oldBook, oldK),
      after: await heldOutError(book, K),
    },
  };
  return { tokenizer: tokenizer.withCodebook(book, K, report), report };
}
