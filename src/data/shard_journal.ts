/**
 * The journal of an unfinished `data` run: `OUT.partial/journal.json` says which shards of
 * the folder are complete (with their size and sha256) and where the encoding stands after
 * each, under a fingerprint of the job. A run of the same job after a crash or a SIGKILL keeps
 * the shards that check out and continues after the last of them; any other job starts over.
 * Shards are written (atomically) before the journal names them, so a shard the journal lists
 * is whole unless someone changed it, which the size and hash checks catch.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import type { Split } from "./dataset.ts";
import type { Augment } from "./crops.ts";
import { fileSystemError, writeFileAtomic } from "../util/files.ts";
import { UserError } from "../errors.ts";

export const JOURNAL_FILE = "journal.json";
/** Holds the process id of the run writing the folder. */
export const LOCK_FILE = "lock";
const JOURNAL_FORMAT = "checkerboard-shards-journal";

/** Everything the shard bytes depend on; a resumed run must have all of it equal. */
export interface ShardJob {
  dataset: string;
  /** ImageSource.fingerprint(): the dataset's listing (names, sizes, times) or pixels. */
  listing: string;
  tokenizer: string;
  scales: number[];
  side: number;
  augment: Augment;
  shardSize: number;
  /** Rows per tokenizer call, and the device: both can change a near-tie between codes. */
  batchSize: number;
  device: string;
}

/** A complete shard and where the encoding stood after its last row. */
export interface JournalShard {
  file: string;
  split: Split;
  count: number;
  bytes: number;
  sha256: string;
  /** Position (in the split's image list) of the image the next row comes from. */
  nextImage: number;
  /** How many of that image's crops are already in this or an earlier shard. */
  nextCrop: number;
  /** Images skipped so far, both splits, up to nextImage. */
  skipped: number;
}

/** A skipped image named in the manifest (the first MAX_SKIPPED_NAMES of them). */
export interface JournalSkip {
  split: Split;
  /** Its position in the split's image list. */
  image: number;
  /** Relative to the dataset folder. */
  file: string;
}

export interface Journal {
  job: ShardJob;
  shards: JournalShard[];
  skippedFiles: JournalSkip[];
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

export async function writeJournal(partial: string, journal: Journal): Promise<void> {
  const text = JSON.stringify({ format: JOURNAL_FORMAT, version: 1, ...journal }, null, 1);
  await writeFileAtomic(join(partial, JOURNAL_FILE), text + "\n");
}

/** The journal in `partial`, or why it cannot be used (missing, unreadable, another format). */
async function readJournal(partial: string): Promise<Journal | string> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(partial, JOURNAL_FILE));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return "it holds no journal";
    throw fileSystemError(err, `cannot read ${join(partial, JOURNAL_FILE)}`);
  }
  try {
    const value = JSON.parse(text);
    if (value?.format !== JOURNAL_FORMAT || value?.version !== 1) {
      return "its journal is of another version";
    }
    if (
      !Array.isArray(value.shards) || !value.shards.every(wellFormed) ||
      !Array.isArray(value.skippedFiles) || typeof value.job !== "object" || value.job === null
    ) {
      return "its journal is damaged";
    }
    return { job: value.job, shards: value.shards, skippedFiles: value.skippedFiles };
  } catch {
    return "its journal is damaged";
  }
}

/** A journal entry with the fields and types this module writes. */
function wellFormed(shard: JournalShard): boolean {
  return typeof shard?.file === "string" && /^(train|val)-\d+\.npz$/.test(shard.file) &&
    (shard.split === "train" || shard.split === "val") && typeof shard.sha256 === "string" &&
    [shard.count, shard.bytes, shard.nextImage, shard.nextCrop, shard.skipped].every(
      (n) => Number.isSafeInteger(n) && n >= 0,
    );
}

/** The first field of the job that differs, for the "starting over" line. */
function jobDifference(a: ShardJob, b: ShardJob): string | undefined {
  for (const key of Object.keys(b) as (keyof ShardJob)[]) {
    if (JSON.stringify(a[key]) !== JSON.stringify(b[key])) {
      return key === "listing" ? "the dataset's files changed" : `its ${key} differs`;
    }
  }
  return undefined;
}

/** True when the shard file exists with the recorded size and sha256. */
async function shardIntact(partial: string, shard: JournalShard): Promise<boolean> {
  try {
    const bytes = await Deno.readFile(join(partial, shard.file));
    return bytes.length === shard.bytes && sha256Hex(bytes) === shard.sha256;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw fileSystemError(err, `cannot read ${join(partial, shard.file)}`);
  }
}

/** True when (split, image) comes before the position a shard ends at. */
function before(skip: JournalSkip, end: JournalShard): boolean {
  if (skip.split !== end.split) return skip.split === "train";
  return skip.image < end.nextImage;
}

/** The name ending of a split's spool of unwritten rows (row_spool.ts) in a partial folder. */
export const SPOOL_SUFFIX = ".rows";

/**
 * What `data` itself leaves in a partial folder: shards, the journal, the manifest, the row
 * spools, temps.
 */
const OWN_FILE =
  /^((train|val)-\d+\.npz|(train|val)\.rows|journal\.json|manifest\.json|lock)(\.tmp-\d+-[a-z0-9]+)?$/;

/** True when process `pid` runs (Linux's /proc; elsewhere every other process counts as gone). */
function running(pid: number): boolean {
  if (pid === Deno.pid) return false;
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/**
 * Claims the partial folder for this process: two runs into one folder would mix their shards.
 * A lock left by a killed run (its process is gone) is taken over.
 */
async function claim(partial: string) {
  const lock = join(partial, LOCK_FILE);
  try {
    const pid = Number((await Deno.readTextFile(lock)).trim());
    if (Number.isSafeInteger(pid) && pid > 0 && running(pid)) {
      throw new UserError(
        `${partial} is being written by another 'checkerboard data' run (process ${pid}); ` +
          `wait for it, or stop it and run this command again (remove ${lock} if that ` +
          `process is not 'checkerboard data')`,
      );
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw fileSystemError(err, `cannot read ${lock}`);
  }
  await writeFileAtomic(lock, `${Deno.pid}\n`);
}

/** Gives the partial folder up (after a failure: the next run may continue it). */
export async function release(partial: string) {
  await Deno.remove(join(partial, LOCK_FILE)).catch(() => {});
}

/**
 * Opens the partial folder for `job`: the journal of the same job, cut to the shards that
 * check out (every other file removed), or a fresh journal in an emptied folder. Says on
 * stderr whether it resumes or starts over, and why.
 */
export async function openPartial(partial: string, job: ShardJob): Promise<Journal> {
  const say = (line: string) => console.error(`data: ${line}`);
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(partial)) names.push(e.name);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) {
      throw fileSystemError(err, `cannot read ${partial}`);
    }
  }
  const foreign = names.find((n) => !OWN_FILE.test(n));
  if (foreign !== undefined) {
    throw new UserError(
      `${partial} holds ${foreign}, which 'checkerboard data' did not write; it keeps its ` +
        `unfinished work in that folder (move ${foreign} away or remove the folder)`,
    );
  }
  try {
    await Deno.mkdir(partial, { recursive: true });
  } catch (err) {
    throw fileSystemError(err, `cannot create ${partial}`);
  }
  await claim(partial);
  let journal: Journal = { job, shards: [], skippedFiles: [] };
  if (names.some((n) => n !== LOCK_FILE)) {
    const found = await readJournal(partial);
    const why = typeof found === "string" ? found : jobDifference(found.job, job);
    if (why !== undefined) {
      say(`${partial} holds an unfinished run that cannot be continued (${why}); starting over`);
    } else if (typeof found !== "string") {
      const kept: JournalShard[] = [];
      for (const shard of found.shards) {
        if (!(await shardIntact(partial, shard))) {
          say(`${join(partial, shard.file)} is missing or changed; encoding again from there`);
          break;
        }
        kept.push(shard);
      }
      const last = kept[kept.length - 1];
      journal = {
        job,
        shards: kept,
        skippedFiles: last ? found.skippedFiles.filter((s) => before(s, last)) : [],
      };
      if (last) {
        const rows = kept.reduce((a, s) => a + s.count, 0);
        say(
          `continuing the unfinished run in ${partial}: ${kept.length} shards (${rows} rows) done`,
        );
      }
    }
    const keep = new Set([LOCK_FILE, ...journal.shards.map((s) => s.file)]);
    for (const name of names) {
      if (!keep.has(name)) await Deno.remove(join(partial, name), { recursive: true });
    }
  }
  await writeJournal(partial, journal);
  return journal;
}
