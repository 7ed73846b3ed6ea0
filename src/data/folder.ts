/**
 * A user's folder in the ImageNet layout: one subfolder per class holding PNG
 * or JPEG files. Images are centre-cropped and resized to `side`. `listFolder` lists the
 * files without decoding them; `FolderSource` decodes one on demand (streaming `data`);
 * `loadFolder` decodes them all into memory (`tokenizer fit`).
 */
import { createHash } from "node:crypto";
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { fileSystemError } from "../util/files.ts";
import type { ImageSet } from "./dataset.ts";
import { decodeImageFile } from "./decode.ts";
import type { ImageSource } from "./image_source.ts";

const IMAGE_EXTENSIONS = /\.(png|jpe?g)$/i;

/** A folder's entries sorted by name; a folder that cannot be read is a UserError naming it. */
async function sortedEntries(path: string): Promise<Deno.DirEntry[]> {
  const entries: Deno.DirEntry[] = [];
  try {
    for await (const e of Deno.readDir(path)) entries.push(e);
  } catch (err) {
    throw fileSystemError(err, `${path}: cannot read the folder`);
  }
  return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * What a folder entry is, following a symbolic link: a link to a missing target is a UserError
 * (a dataset that silently lost images would change the split and the labels).
 */
async function kindOf(path: string, entry: Deno.DirEntry): Promise<"file" | "folder" | "other"> {
  if (!entry.isSymlink) return entry.isFile ? "file" : entry.isDirectory ? "folder" : "other";
  try {
    const target = await Deno.stat(path);
    return target.isFile ? "file" : target.isDirectory ? "folder" : "other";
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new UserError(`${path}: a symbolic link to a missing file (dangling link)`);
    }
    throw fileSystemError(err, `${path}: cannot follow the symbolic link`);
  }
}

/** The images of a dataset folder, sorted by class folder then file name. */
export interface FolderListing {
  /** The dataset folder as given. */
  root: string;
  classes: string[];
  /** (count) paths relative to root, "class/file.jpg". */
  files: string[];
  /** (count) class index per file. */
  labels: Int32Array;
}

/**
 * Lists the dataset folder `path` without decoding anything: class folders sorted by name,
 * their .png/.jpg files sorted by name. A missing folder, a dangling link and an empty class
 * folder are UserErrors.
 */
export async function listFolder(path: string): Promise<FolderListing> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new UserError(`${path}: dataset folder not found`);
    }
    throw fileSystemError(err, `${path}: cannot read the dataset folder`);
  }
  if (!stat.isDirectory) throw new UserError(`${path}: not a folder`);
  const classes: string[] = [];
  const files: string[] = [];
  const labels: number[] = [];
  for (const entry of await sortedEntries(path)) {
    const classDir = join(path, entry.name);
    if (await kindOf(classDir, entry) !== "folder") continue;
    const label = classes.length;
    let images = 0;
    for (const e of await sortedEntries(classDir)) {
      if (IMAGE_EXTENSIONS.test(e.name) && await kindOf(join(classDir, e.name), e) === "file") {
        files.push(`${entry.name}/${e.name}`);
        labels.push(label);
        images++;
      }
    }
    // Refused rather than skipped: skipping would shift the labels of every later class.
    if (images === 0) {
      throw new UserError(
        `${classDir}: class folder holds no .png or .jpg images (add images or remove the folder)`,
      );
    }
    classes.push(entry.name);
  }
  if (files.length === 0) {
    throw new UserError(
      `${path}: no images found (expected one subfolder per class holding .png or .jpg files)`,
    );
  }
  return { root: path, classes, files, labels: Int32Array.from(labels) };
}

/** Files whose size and modification time are read at once while fingerprinting. */
const STATS_IN_FLIGHT = 32;

/** A folder dataset as a source: files are decoded (decode.ts) only when asked for. */
export class FolderSource implements ImageSource {
  readonly skipsUnreadable = true;
  constructor(readonly listing: FolderListing, readonly name: string) {}

  static async open(path: string, name: string): Promise<FolderSource> {
    return new FolderSource(await listFolder(path), name);
  }

  get classes() {
    return this.listing.classes;
  }
  get count() {
    return this.listing.files.length;
  }
  get labels() {
    return this.listing.labels;
  }

  nameOf(i: number): string {
    return this.listing.files[i];
  }

  /** Of the relative names, sizes and modification times, in listing order. */
  async fingerprint(): Promise<string> {
    const h = createHash("sha256");
    h.update(JSON.stringify(this.listing.classes));
    const { files, root } = this.listing;
    for (let start = 0; start < files.length; start += STATS_IN_FLIGHT) {
      const chunk = files.slice(start, start + STATS_IN_FLIGHT);
      const stats = await Promise.all(chunk.map((f) => Deno.stat(join(root, f)).catch(() => null) // unreadable now: decoding will skip it
      ));
      chunk.forEach((f, k) => {
        const s = stats[k];
        h.update(`${f}\0${s?.size ?? -1}\0${s?.mtime?.getTime() ?? -1}\n`);
      });
    }
    return h.digest("hex").slice(0, 16);
  }

  square(i: number, side: number): Promise<Uint8Array> {
    return decodeImageFile(join(this.listing.root, this.listing.files[i]), side);
  }
}

/** Lists and decodes every image of the folder into memory (small datasets, `tokenizer fit`). */
export async function loadFolder(path: string, side: number, name: string): Promise<ImageSet> {
  const listing = await listFolder(path);
  const count = listing.files.length;
  const size = side * side * 3;
  const pixels = new Uint8Array(count * size); // (count, side, side, 3)
  const parallel = 8;
  for (let start = 0; start < count; start += parallel) {
    const batch = listing.files.slice(start, start + parallel);
    const images = await Promise.all(batch.map((f) => decodeImageFile(join(path, f), side)));
    images.forEach((img, j) => pixels.set(img, (start + j) * size));
  }
  return { name, classes: listing.classes, side, count, pixels, labels: listing.labels };
}
