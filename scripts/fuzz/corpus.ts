/**
 * The corpus every case starts from, made by the tool itself in a temporary folder:
 *   imgs/     a folder: dataset, 3 classes x 4 small PNG and JPEG images
 *   tok/      a patch tokenizer fitted on MNIST (16 codes, 2 iterations)
 *   data/     token shards of imgs/ with tok/ (manifest.json, 3 train + 1 val shard)
 *   run/      a trained tiny checkpoint (depth 1, width 32, 4 steps): model.safetensors, its
 *             resume state, metrics.jsonl and tokenizer/
 * Every command of a case runs with the case's copy as its working folder, so the paths
 * below are relative to it.
 */
import sharp from "sharp";
import { join, relative } from "node:path";
import { runTool } from "./runner.ts";

export const CLASSES = ["one", "two", "zero"];
/** Shard geometry the value mutations aim at: codebook size and class count of the corpus. */
export const CORPUS_CODES = 16;

/** What the corpus's commands share: the tiny model and cheap, single-thread settings. */
export const TINY_MODEL = ["--depth", "1", "--width", "32", "--heads", "2"];

async function writeImages(root: string): Promise<void> {
  for (const [c, name] of CLASSES.entries()) {
    await Deno.mkdir(join(root, "imgs", name), { recursive: true });
    for (let i = 0; i < 4; i++) {
      // Non-square images of different sizes, so decoding crops and resizes.
      const w = 32 + 8 * (i % 2), h = 32 + 4 * c;
      const rgb = new Uint8Array(w * h * 3);
      for (let j = 0; j < rgb.length; j++) rgb[j] = (j * (i + 3) + c * 70 + (j >> 7) * 13) & 0xff;
      const img = sharp(rgb, { raw: { width: w, height: h, channels: 3 } });
      const file = join(root, "imgs", name, i % 2 === 0 ? `img${i}.png` : `img${i}.jpg`);
      if (i % 2 === 0) await img.png().toFile(file);
      else await img.jpeg({ quality: 85 }).toFile(file);
    }
  }
}

async function must(root: string, args: string[]): Promise<void> {
  const r = await runTool(args, { cwd: root, timeoutMs: 300_000 });
  if (r.code !== 0) {
    throw new Error(
      `building the fuzz corpus: 'checkerboard ${args.join(" ")}' exited ${r.code}:\n${r.stderr}`,
    );
  }
}

/** Builds the corpus in `root` (an empty folder). */
export async function buildCorpus(root: string): Promise<void> {
  await writeImages(root);
  await must(root, [
    "tokenizer",
    "fit",
    "--dataset",
    "mnist",
    "--codes",
    String(CORPUS_CODES),
    "--iterations",
    "2",
    "--max-patches",
    "2000",
    "--out",
    "tok",
    "--device",
    "cpu",
  ]);
  await must(root, [
    "data",
    "--dataset",
    "folder:imgs",
    "--tokenizer",
    "tok",
    "--out",
    "data",
    "--shard-size",
    "4",
    "--device",
    "cpu",
  ]);
  await must(root, [
    "train",
    "--data",
    "data",
    "--out",
    "run",
    ...TINY_MODEL,
    "--iters",
    "4",
    "--batch",
    "4",
    "--steps-per-scale-train",
    "1,2",
    "--eval-batches",
    "1",
    "--device",
    "cpu",
  ]);
}

/** Every file under `dir`, relative to `root`, sorted (so cases pick files deterministically). */
export async function listFiles(root: string, dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(path: string) {
    const entries: Deno.DirEntry[] = [];
    for await (const e of Deno.readDir(path)) entries.push(e);
    entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const e of entries) {
      const p = join(path, e.name);
      if (e.isDirectory) await walk(p);
      else out.push(relative(root, p));
    }
  }
  await walk(join(root, dir));
  return out;
}

/** Copies a folder tree (files, folders and symbolic links as links). */
export async function copyTree(from: string, to: string): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for await (const e of Deno.readDir(from)) {
    const src = join(from, e.name), dst = join(to, e.name);
    if (e.isSymlink) await Deno.symlink(await Deno.readLink(src), dst);
    else if (e.isDirectory) await copyTree(src, dst);
    else await Deno.copyFile(src, dst);
  }
}
