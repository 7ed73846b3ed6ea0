/**
 * Encodes a dataset into a token shard folder (DESIGN.md "Data"): every image at every scale
 * with one tokenizer, the splits as shards, and manifest.json. It streams: images are decoded
 * a few batches ahead (image_source.ts), cropped (crops.ts), encoded batch by batch, and each
 * shard is written as soon as it is full, so memory stays at a few batches and one shard
 * whatever the dataset's size. The folder is built under the fixed name `OUT.partial` with a
 * journal (shard_journal.ts): a killed run, run again, continues after its last whole shard,
 * and ends with the same bytes as an uninterrupted run. The folder is renamed to `OUT` when
 * complete, so a folder under its final name is always whole.
 */
import type { ImageSet, Split } from "./dataset.ts";
import { splitIndices } from "./dataset.ts";
import type { ImageTokenizer } from "../tokenizer/tokenizer.ts";
import {
  CODES_LAYOUT,
  type Manifest,
  MAX_SKIPPED_NAMES,
  type ShardEntry,
  SHARDS_FORMAT,
  writeManifest,
} from "./shards.ts";
import { readNpz, writeNpzAtomic } from "./npy.ts";
import { RowSpool } from "./row_spool.ts";
import { join, resolve } from "node:path";
import { UserError } from "../errors.ts";
import { exists, fileSystemError, outFolderExists } from "../util/files.ts";
import { manifestTokenizerPath } from "./manifest_tokenizer.ts";
import { Progress } from "../util/progress.ts";
import type { Device } from "../engine.ts";
import { beginStreaming, settleMemory } from "../util/memory.ts";
import { asSource, type ImageSource } from "./image_source.ts";
import { type Augment, cropsOf, cropsPerImage, squareSideFor } from "./crops.ts";
import {
  type Journal,
  JOURNAL_FILE,
  openPartial,
  release,
  type ShardJob,
  SPOOL_SUFFIX,
  writeJournal,
} from "./shard_journal.ts";

export interface MakeShardsOptions {
  tokenizer: ImageTokenizer;
  /**
   * The tokenizer's folder (absolute or from the working folder); default: the folder it was
   * loaded from. The manifest names it relative to `out`, so the shards work from any folder.
   */
  tokenizerDir?: string;
  /** The ratio name the scales came from, or "explicit". */
  ratio: string;
  /** The image side is scales[last] * tokenizer.patch. */
  scales: number[];
  /** Crops of each training image (default none); validation images get the centre crop. */
  augment?: Augment;
  /** Rows (crops) per shard. */
  shardSize: number;
  /** Rows (crops) per tokenizer call; default DEFAULT_ENCODE_BATCH. */
  batchSize?: number;
  device: Device;
  /** No progress display (skipped images and resuming are still reported on stderr). */
  quiet?: boolean;
}

/** Rows per tokenizer call: at 256 px about 6 MB of pixels; a few such batches are held. */
export const DEFAULT_ENCODE_BATCH = 32;
/** Decoded pixels between two settleMemory calls: 10 squares of 256 px, 170 of 64 px. */
const SETTLE_AFTER_BYTES = 2 << 20;
/** Images decoded ahead of the encoder at least (sharp decodes them on its own threads). */
const MIN_DECODE_AHEAD = 16;

/**
 * Checks that `out` can become a shard folder: absent, or (with `replace`) an empty folder or
 * a shard folder (one with manifest.json). A file, or a folder of other things, is never
 * replaced: `--force` must not delete what 'checkerboard data' did not make.
 */
export async function checkShardOutput(out: string, replace: boolean): Promise<void> {
  if (!(await outFolderExists(out))) return;
  if (!replace) throw new UserError(`${out}: already exists (use --force to replace it)`);
  if (await exists(join(out, "manifest.json"))) return;
  for await (const _ of Deno.readDir(out)) {
    throw new UserError(
      `--out ${out} is a folder that holds no manifest.json; --force replaces only shard ` +
        `folders (remove it or choose another --out)`,
    );
  }
}

/**
 * Refuses a dataset whose training split would lack a class (or be empty): training needs
 * every class, and the manifest reader refuses a split without shards.
 */
function checkSplits(source: ImageSource) {
  if (source.count < 2) {
    throw new UserError(
      `dataset ${source.name} has ${source.count} image${source.count === 1 ? "" : "s"}: too ` +
        `few for a training and a validation split`,
    );
  }
  const perClass = new Array<number>(source.classes.length).fill(0);
  for (const i of splitIndices(source.count, "train")) perClass[source.labels[i]]++;
  const missing = perClass.findIndex((n) => n === 0);
  if (missing >= 0) {
    const total = source.labels.filter((l) => l === missing).length;
    throw new UserError(
      `dataset ${source.name}: class '${source.classes[missing]}' has no image in the training ` +
        `split (${total} image${total === 1 ? "" : "s"}, held out for validation; add more)`,
    );
  }
}

/** The image side for `scales`, checked against the tokenizer. */
export function imageSideFor(tokenizer: ImageTokenizer, scales: readonly number[]): number {
  const side = scales[scales.length - 1] * tokenizer.patch;
  if (tokenizer.fixedSide !== undefined && side !== tokenizer.fixedSide) {
    throw new UserError(
      `the scales end at ${scales[scales.length - 1]}, so images of ${side}px, but the ` +
        `tokenizer was fitted for ${tokenizer.fixedSide}px`,
    );
  }
  return side;
}

/** One image of a split, decoded (or not). */
interface Decoded {
  /** Its position in the split's image list. */
  position: number;
  square?: Uint8Array;
  error?: unknown;
}

/**
 * Squares of the images at positions start.. of `indices`, in order, with up to `ahead`
 * decodes in flight. Never rejects: a failed decode is an item with `error`.
 */
async function* decodeInOrder(
  source: ImageSource,
  indices: Int32Array,
  start: number,
  side: number,
  ahead: number,
): AsyncGenerator<Decoded> {
  const load = (position: number): Promise<Decoded> =>
    source.square(indices[position], side).then(
      (square) => ({ position, square }),
      (error) => ({ position, error }),
    );
  const window: Promise<Decoded>[] = [];
  let next = start;
  while (window.length < ahead && next < indices.length) window.push(load(next++));
  while (window.length > 0) {
    const item = await window.shift()!;
    if (next < indices.length) window.push(load(next++));
    yield item;
  }
}

/** The first line of an error's message. */
function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0];
}

/**
 * The rows of one split as they are encoded, cut into shards. Each full shard is written, then
 * the journal, which records where the encoding stands after the shard's last row.
 */
class SplitWriter {
  /** The current shard's codes, (rows, L), in a file: a shard's rows are not held in memory. */
  private readonly codes: RowSpool;
  private readonly labels: Int32Array; // (shardSize)
  private rows = 0;
  private index: number;
  /** Skipped images that no written shard covers yet: (position, file). */
  private pending: { image: number; file: string }[] = [];

  constructor(
    private readonly partial: string,
    private readonly split: Split,
    private readonly L: number,
    private readonly shardSize: number,
    private readonly journal: Journal,
    /** Images skipped so far in both splits, up to the last shard written (or split ended). */
    private readonly tally: { skipped: number },
  ) {
    this.codes = new RowSpool(join(partial, `${split}${SPOOL_SUFFIX}`), L);
    this.labels = new Int32Array(shardSize);
    this.index = journal.shards.filter((s) => s.split === split).length;
  }

  /** Rows the current shard can still take. */
  get room(): number {
    return this.shardSize - this.rows;
  }

  skip(image: number, file: string) {
    this.pending.push({ image, file });
  }

  /** Appends one row; `nextImage`, `nextCrop` say where the encoding stands after it. */
  async append(codes: Uint16Array, label: number, nextImage: number, nextCrop: number) {
    await this.codes.append(codes);
    this.labels[this.rows++] = label;
    if (this.rows === this.shardSize) await this.write(nextImage, nextCrop);
  }

  /** Writes the rows held (if any) as the split's last shard; every skip is then counted. */
  async finish(imageCount: number) {
    if (this.rows > 0) await this.write(imageCount, 0);
    else this.commitSkips(imageCount);
    await this.codes.remove();
  }

  /** Counts the pending skips before `nextImage` (naming the first few in the journal). */
  private commitSkips(nextImage: number) {
    for (const s of this.pending.filter((s) => s.image < nextImage)) {
      if (this.journal.skippedFiles.length < MAX_SKIPPED_NAMES) {
        this.journal.skippedFiles.push({ split: this.split, ...s });
      }
      this.tally.skipped++;
    }
    this.pending = this.pending.filter((s) => s.image >= nextImage);
  }

  private async write(nextImage: number, nextCrop: number) {
    const count = this.rows, L = this.L;
    const file = `${this.split}-${String(this.index).padStart(5, "0")}.npz`;
    // The codes stream from the spool file into the deflater: no copy of the shard is held.
    const { bytes, sha256 } = await writeNpzAtomic(join(this.partial, file), {
      codes: { shape: [count, L], type: Uint16Array, chunks: (n) => this.codes.chunks(n) },
      labels: { shape: [count], data: this.labels.subarray(0, count) },
    });
    await this.codes.reset();
    this.commitSkips(nextImage);
    this.journal.shards.push({
      file,
      split: this.split,
      count,
      bytes,
      sha256,
      nextImage,
      nextCrop,
      skipped: this.tally.skipped,
    });
    await writeJournal(this.partial, this.journal);
    this.rows = 0;
    this.index++;
  }
}

/** Where a split's encoding starts: after the journal's last shard of it, or at the top. */
function resumePoint(journal: Journal, split: Split, imageCount: number) {
  const last = journal.shards.at(-1);
  if (split === "train" && last?.split === "val") return { image: imageCount, crop: 0 };
  if (last?.split !== split) return { image: 0, crop: 0 };
  return { image: last.nextImage, crop: last.nextCrop };
}

interface SplitJob {
  source: ImageSource;
  tokenizer: ImageTokenizer;
  scales: number[];
  side: number;
  augment: Augment;
  batchSize: number;
  device: Device;
  quiet?: boolean;
}

/** Encodes one split from where the journal stands into shards (SplitWriter). */
async function encodeSplit(job: SplitJob, split: Split, writer: SplitWriter, journal: Journal) {
  const { source, tokenizer, scales, side, batchSize } = job;
  const indices = splitIndices(source.count, split); // source image index per position
  const start = resumePoint(journal, split, indices.length);
  // Validation keeps the centre crop: it measures the model, not the augmentation.
  const augment = split === "train" ? job.augment : "none";
  const crops = cropsPerImage(augment);
  const big = squareSideFor(side, augment);
  const size = side * side * 3;
  const pixels = new Uint8Array(batchSize * size); // (batchSize, side, side, 3)
  const labels = new Int32Array(batchSize); // (batchSize)
  const after = new Int32Array(batchSize * 2); // (batchSize, 2): (nextImage, nextCrop) per row
  let rows = 0;
  /** Images decoded (or skipped) whose rows are not encoded yet: progress counts them after. */
  let waiting = 0;
  /** Bytes of decoded squares since memory was last settled (util/memory.ts). */
  let decodedBytes = 0;
  const L = scales.reduce((a, s) => a + s * s, 0);
  const encodeBatch = async () => {
    const codes = await tokenizer.encodeImages(
      pixels.subarray(0, rows * size),
      rows,
      side,
      scales,
      job.device,
    ); // (rows, L)
    for (let r = 0; r < rows; r++) {
      await writer.append(
        codes.subarray(r * L, (r + 1) * L),
        labels[r],
        after[2 * r],
        after[2 * r + 1],
      );
    }
    rows = 0;
    if (waiting > 0) progress.tick(waiting);
    waiting = 0;
    // After a fixed volume of decoded pixels, so that the garbage left between two
    // collections is the same whatever the images' sizes and the dataset's length; not after
    // every batch: a collection costs tens of milliseconds, and small images are fast.
    if (decodedBytes >= SETTLE_AFTER_BYTES) {
      await settleMemory();
      decodedBytes = 0;
    }
  };
  const progress = new Progress(`encode ${split}`, indices.length - start.image, "img", {
    quiet: job.quiet,
  });
  const ahead = Math.max(MIN_DECODE_AHEAD, 2 * Math.ceil(batchSize / crops));
  for await (const item of decodeInOrder(source, indices, start.image, big, ahead)) {
    const p = item.position;
    if (item.square === undefined) {
      if (!source.skipsUnreadable) throw item.error;
      console.error(`data: warning: skipped ${firstLine(item.error)}`);
      writer.skip(p, source.nameOf(indices[p]));
      waiting++;
      continue;
    }
    decodedBytes += item.square.length;
    const all = cropsOf(item.square, big, side, augment); // (crops, side, side, 3)
    waiting++;
    for (let c = p === start.image ? start.crop : 0; c < crops; c++) {
      pixels.set(all.subarray(c * size, (c + 1) * size), rows * size);
      labels[rows] = source.labels[indices[p]];
      after[2 * rows] = c + 1 < crops ? p : p + 1;
      after[2 * rows + 1] = c + 1 < crops ? c + 1 : 0;
      // A batch never spans two shards, so a resumed run (which starts at a shard) encodes
      // the same batches: a batch's composition can move a near-tie between two codes.
      if (++rows === Math.min(batchSize, writer.room)) await encodeBatch();
    }
  }
  if (rows > 0) await encodeBatch();
  if (waiting > 0) progress.tick(waiting);
  await writer.finish(indices.length);
  progress.finish();
}

/**
 * Writes the shard folder `out` (replacing a shard folder that exists) from an in-memory set
 * or a source; returns its manifest.
 */
export async function makeShards(
  input: ImageSet | ImageSource,
  out: string,
  o: MakeShardsOptions,
): Promise<Manifest> {
  const { tokenizer, scales } = o;
  const source = asSource(input);
  const side = imageSideFor(tokenizer, scales);
  const augment = o.augment ?? "none";
  const batchSize = o.batchSize ?? DEFAULT_ENCODE_BATCH;
  const L = scales.reduce((a, s) => a + s * s, 0);
  const tokenizerDir = o.tokenizerDir ?? tokenizer.dir;
  if (tokenizerDir === undefined) {
    throw new Error("makeShards: the tokenizer was not loaded from a folder; pass tokenizerDir");
  }
  checkSplits(source);
  await checkShardOutput(out, true);
  beginStreaming();
  // Absolute, so that an --out of "." or "sub/.." still gets a sibling folder; fixed, so that
  // a second run finds the first one's work.
  const partial = `${resolve(out)}.partial`;
  const job: ShardJob = {
    dataset: source.name,
    listing: await source.fingerprint(),
    tokenizer: tokenizer.hash,
    scales,
    side,
    augment,
    shardSize: o.shardSize,
    batchSize,
    device: o.device,
  };
  let claimed = false;
  try {
    const journal = await openPartial(partial, job);
    claimed = true;
    const tally = { skipped: journal.shards.at(-1)?.skipped ?? 0 };
    for (const split of ["train", "val"] as const) {
      const writer = new SplitWriter(partial, split, L, o.shardSize, journal, tally);
      await encodeSplit(
        { source, tokenizer, scales, side, augment, batchSize, device: o.device, quiet: o.quiet },
        split,
        writer,
        journal,
      );
    }
    const shards: ShardEntry[] = journal.shards.map(({ file, split, count }) => ({
      file,
      split,
      count,
    }));
    const counts = { train: 0, val: 0 } as Record<Split, number>;
    for (const s of shards) counts[s.split] += s.count;
    await checkRows(source, partial, shards, counts, tally.skipped);
    const manifest: Manifest = {
      format: SHARDS_FORMAT,
      version: 1,
      dataset: source.name,
      imageSide: side,
      tokenizer: {
        hash: tokenizer.hash,
        patch: tokenizer.patch,
        codes: tokenizer.codes,
        path: manifestTokenizerPath(tokenizerDir, out),
      },
      ratio: o.ratio,
      scales,
      patch: tokenizer.patch,
      codes: tokenizer.codes,
      sequenceLength: L,
      classes: source.classes,
      counts,
      shards,
      layout: CODES_LAYOUT,
      augment,
      ...(source.skipsUnreadable
        ? { skipped: { count: tally.skipped, files: journal.skippedFiles.map((s) => s.file) } }
        : {}),
    };
    await writeManifest(partial, manifest);
    await Deno.remove(join(partial, JOURNAL_FILE));
    await release(partial);
    await checkShardOutput(out, true); // again: it may have appeared while encoding
    try {
      if (await exists(out)) await Deno.remove(resolve(out), { recursive: true });
      await Deno.rename(partial, resolve(out));
    } catch (err) {
      throw fileSystemError(err, `cannot move ${partial} to ${out}`);
    }
    return manifest;
  } catch (err) {
    // A full disk while a shard is written (writeNpzAtomic names the shard). The shards
    // written so far stay in `partial` for the next run of the same command.
    if (claimed) await release(partial);
    throw fileSystemError(err, `cannot write the shards into ${partial}`);
  }
}

/**
 * Refuses shards that training would refuse because images were skipped: a split without
 * rows, or a class without training rows (the shards' labels are read one shard at a time).
 */
async function checkRows(
  source: ImageSource,
  partial: string,
  shards: ShardEntry[],
  counts: Record<Split, number>,
  skipped: number,
) {
  if (skipped === 0) return; // checkSplits saw every class in the training split
  const why = ` (${skipped} image${skipped === 1 ? "" : "s"} could not be decoded)`;
  for (const split of ["train", "val"] as const) {
    if (counts[split] === 0) {
      throw new UserError(`dataset ${source.name}: no ${split} image could be decoded${why}`);
    }
  }
  const perClass = new Array<number>(source.classes.length).fill(0);
  for (const shard of shards.filter((s) => s.split === "train")) {
    const { labels } = await readNpz(join(partial, shard.file));
    for (const c of labels.data as Int32Array) perClass[c]++;
  }
  const empty = perClass.findIndex((n) => n === 0);
  if (empty >= 0) {
    throw new UserError(
      `dataset ${source.name}: class '${source.classes[empty]}' has no training image left${why}`,
    );
  }
}
