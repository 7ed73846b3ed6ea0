/**
 * A user's folder in the ImageNet layout: one subfolder per class holding PNG
 * or JPEG files. Images are centre-cropped and resized to `side`.
 */
import { join } from "node:path";
import { UserError } from "../errors.ts";
import { fileSystemError } from "../util/files.ts";
import type { ImageSet } from "./dataset.ts";
import { decodeImageFile } from "./decode.ts";

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

export async function loadFolder(path: string, side: number, name: string): Promise<ImageSet> {
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
  const files: { file: string; label: number }[] = [];
  for (const entry of await sortedEntries(path)) {
    const classDir = join(path, entry.name);
    if (await kindOf(classDir, entry) !== "folder") continue;
    const label = classes.length;
    let images = 0;
    for (const e of await sortedEntries(classDir)) {
      const file = join(classDir, e.name);
      if (IMAGE_EXTENSIONS.test(e.name) && await kindOf(file, e) === "file") {
        files.push({ file, label });
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
  const size = side * side * 3;
  const pixels = new Uint8Array(files.length * size);
  const labels = new Int32Array(files.length);
  const parallel = 8;
  for (let start = 0; start < files.length; start += parallel) {
    const batch = files.slice(start, start + parallel);
    const images = await Promise.all(batch.map((f) => decodeImageFile(f.file, side)));
    images.forEach((img, j) => {
      pixels.set(img, (start + j) * size);
      labels[start + j] = batch[j].label;
    });
  }
  return {
    name,
    classes,
    side,
    count: files.length,
    pixels,
    labels,
  };
}
