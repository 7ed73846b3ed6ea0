/**
 * A user's folder in the ImageNet layout: one subfolder per class holding PNG
 * or JPEG files. Images are centre-cropped and resized to `side`.
 */
import { join } from "node:path";
import { UserError } from "../errors.ts";
import type { ImageSet } from "./dataset.ts";
import { decodeImageFile } from "./decode.ts";

const IMAGE_EXTENSIONS = /\.(png|jpe?g)$/i;

async function sortedEntries(path: string): Promise<Deno.DirEntry[]> {
  const entries: Deno.DirEntry[] = [];
  for await (const e of Deno.readDir(path)) entries.push(e);
  return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

export async function loadFolder(path: string, side: number, name: string): Promise<ImageSet> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(path);
  } catch {
    throw new UserError(`${path}: dataset folder not found`);
  }
  if (!stat.isDirectory) throw new UserError(`${path}: not a folder`);
  const classDirs = (await sortedEntries(path)).filter((e) => e.isDirectory);
  const files: { file: string; label: number }[] = [];
  for (const [label, dir] of classDirs.entries()) {
    for (const e of await sortedEntries(join(path, dir.name))) {
      if (e.isFile && IMAGE_EXTENSIONS.test(e.name)) {
        files.push({ file: join(path, dir.name, e.name), label });
      }
    }
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
    classes: classDirs.map((d) => d.name),
    side,
    count: files.length,
    pixels,
    labels,
  };
}
