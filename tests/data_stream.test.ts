/**
 * Streaming `data` (src/data/make_shards.ts): the same rows as the in-memory path, ten-crop
 * geometry, corrupt images skipped and counted, and resume after an interruption with the
 * same bytes as an uninterrupted run.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import sharp from "sharp";
import { makeShards, type MakeShardsOptions } from "../src/data/make_shards.ts";
import { FolderSource, listFolder, loadFolder } from "../src/data/folder.ts";
import { splitIndices } from "../src/data/dataset.ts";
import { decodeImageFile } from "../src/data/decode.ts";
import { fiveCropCorners, mirror, squareSideFor, tenCrop } from "../src/data/crops.ts";
import { parseManifest, readManifest, readShard } from "../src/data/shards.ts";
import type { ImageTokenizer } from "../src/tokenizer/tokenizer.ts";
import type { PatchTokenizer } from "../src/tokenizer/patch_vq.ts";
import { Rng } from "../src/util/rng.ts";
import { runCli, tempDir } from "./helpers.ts";
import { writeTokenizer } from "./shard_fixture.ts";

/** Writes `perClass` noisy JPEGs of random sizes (12-40 px, any aspect) per class. */
async function writeJpegFolder(dir: string, perClass: number, seed = 1): Promise<string> {
  const rng = new Rng(seed);
  for (const [c, cls] of ["a", "b", "c"].entries()) {
    await Deno.mkdir(`${dir}/${cls}`, { recursive: true });
    for (let i = 0; i < perClass; i++) {
      const w = 12 + rng.int(29), h = 12 + rng.int(29);
      const rgb = new Uint8Array(w * h * 3); // (h, w, 3)
      for (let p = 0; p < w * h; p++) {
        const x = p % w, y = Math.floor(p / w);
        rgb.set([(x * 9 + c * 80) % 256, (y * 7) % 256, rng.int(256)], p * 3);
      }
      await sharp(Buffer.from(rgb), { raw: { width: w, height: h, channels: 3 } })
        .jpeg({ quality: 90 })
        .toFile(`${dir}/${cls}/${String(i).padStart(3, "0")}.jpg`);
    }
  }
  return dir;
}

/**
 * A JPEG folder (6 images per class) and a patch tokenizer under `dir`, with `dataArgs`, the
 * `data` command line that shards the folder with that tokenizer into `out`, then `extra`.
 */
async function folderWithTokenizer(dir: string) {
  const images = await writeJpegFolder(`${dir}/images`, 6);
  const tok = `${dir}/tok`;
  await writeTokenizer(tok);
  const dataArgs = (out: string, ...extra: string[]) => [
    "data",
    "--dataset",
    `folder:${images}`,
    "--tokenizer",
    tok,
    "--out",
    out,
    ...extra,
  ];
  return { images, dataArgs };
}

/** Every row of a shard folder's split, in shard order: codes (n, L) and labels (n). */
async function rowsOf(dir: string, split: "train" | "val") {
  const manifest = await readManifest(dir);
  const codes: number[][] = [], labels: number[] = [];
  for (const entry of manifest.shards.filter((s) => s.split === split)) {
    const shard = await readShard(dir, manifest, entry);
    const L = manifest.sequenceLength;
    for (let r = 0; r < entry.count; r++) {
      codes.push(Array.from(shard.codes.subarray(r * L, (r + 1) * L)));
      labels.push(shard.labels[r]);
    }
  }
  return { codes, labels };
}

/** Name -> bytes of every file in `dir`. */
async function filesOf(dir: string): Promise<Map<string, Uint8Array>> {
  const files = new Map<string, Uint8Array>();
  for await (const e of Deno.readDir(dir)) {
    files.set(e.name, await Deno.readFile(`${dir}/${e.name}`));
  }
  return new Map([...files].sort(([a], [b]) => (a < b ? -1 : 1)));
}

function assertSameFiles(a: Map<string, Uint8Array>, b: Map<string, Uint8Array>) {
  assert.deepEqual([...a.keys()], [...b.keys()]);
  for (const [name, bytes] of a) assert.ok(Buffer.from(bytes).equals(b.get(name)!), name);
}

function options(tokenizer: PatchTokenizer, extra: Partial<MakeShardsOptions> = {}) {
  return {
    tokenizer,
    ratio: "2",
    scales: [1, 2, 4],
    shardSize: 7,
    batchSize: 5,
    device: "cpu" as const,
    quiet: true,
    ...extra,
  };
}

Deno.test("streaming a folder gives the in-memory path's split, labels and codes", async () => {
  await using dir = await tempDir();
  const images = await writeJpegFolder(`${dir.path}/images`, 8);
  const tokenizer = await writeTokenizer(`${dir.path}/tok`);
  const streamed = `${dir.path}/streamed`;
  const manifest = await makeShards(
    await FolderSource.open(images, "folder:x"),
    streamed,
    options(tokenizer),
  );
  assert.deepEqual(manifest.classes, ["a", "b", "c"]);
  assert.equal(manifest.augment, "none");
  assert.deepEqual(manifest.skipped, { count: 0, files: [] });
  // The in-memory path: every image decoded at once, encoded by the tokenizer directly.
  const set = await loadFolder(images, 16, "folder:x");
  for (const split of ["train", "val"] as const) {
    const indices = splitIndices(set.count, split);
    const codes = await tokenizer.encode(set, indices, [1, 2, 4], "cpu");
    const rows = await rowsOf(streamed, split);
    assert.deepEqual(rows.labels, Array.from(indices, (i) => set.labels[i]), split);
    assert.deepEqual(rows.codes.flat(), Array.from(codes), split);
    assert.equal(manifest.counts[split], indices.length);
  }
  // The in-memory set as a source writes the same shard files.
  const fromSet = `${dir.path}/from-set`;
  await makeShards(set, fromSet, options(tokenizer));
  const a = await filesOf(streamed), b = await filesOf(fromSet);
  a.delete("manifest.json"), b.delete("manifest.json");
  assertSameFiles(a, b);
});

/** A (big, big, 3) square whose pixel (x, y) is (x, y, 7). */
function coordinateSquare(big: number): Uint8Array {
  const out = new Uint8Array(big * big * 3);
  for (let y = 0; y < big; y++) for (let x = 0; x < big; x++) out.set([x, y, 7], (y * big + x) * 3);
  return out;
}

/** Pixel (x, y) of crop k of `crops` (n, side, side, 3). */
function pixel(crops: Uint8Array, side: number, k: number, x: number, y: number): number[] {
  const at = ((k * side + y) * side + x) * 3;
  return Array.from(crops.subarray(at, at + 3));
}

Deno.test("ten-crop: LlamaGen's 1.1 square, four corners and centre, then the mirror image's", () => {
  assert.equal(squareSideFor(256, "ten-crop"), 281); // int(256 * 1.1)
  assert.equal(squareSideFor(64, "ten-crop"), 70);
  assert.equal(squareSideFor(64, "none"), 64);
  // Python's round(12.5) is 12: torchvision's centre crop of 281 into 256 starts at 12.
  assert.deepEqual(fiveCropCorners(281, 256)[4], [12, 12]);
  const big = 25, side = 20, far = 5, centre = 2; // round(2.5) = 2
  assert.deepEqual(fiveCropCorners(big, side), [[0, 0], [0, far], [far, 0], [far, far], [
    centre,
    centre,
  ]]);
  const crops = tenCrop(coordinateSquare(big), big, side); // (10, side, side, 3)
  assert.equal(crops.length, 10 * side * side * 3);
  // Crop k's pixel (0, 0) and (side-1, side-1) in the original square's coordinates.
  const corner = [[0, 0], [far, 0], [0, far], [far, far], [centre, centre]];
  for (let k = 0; k < 5; k++) {
    const [x0, y0] = corner[k];
    assert.deepEqual(pixel(crops, side, k, 0, 0), [x0, y0, 7], `crop ${k}`);
    assert.deepEqual(pixel(crops, side, k, side - 1, side - 1), [x0 + side - 1, y0 + side - 1, 7]);
    // The mirror half: five_crop of the mirrored square, so column x holds x' = big-1-x.
    const [mx, my] = corner[k];
    assert.deepEqual(pixel(crops, side, 5 + k, 0, 0), [big - 1 - mx, my, 7], `crop ${5 + k}`);
    assert.deepEqual(pixel(crops, side, 5 + k, side - 1, 0), [big - side - mx, my, 7]);
  }
  // The mirror's top-left crop is the mirror image of the top-right crop, and so on.
  const one = (k: number) => crops.subarray(k * side * side * 3, (k + 1) * side * side * 3);
  for (const [m, k] of [[5, 1], [6, 0], [7, 3], [8, 2]]) {
    assert.deepEqual(one(m), mirror(one(k), side));
  }
});

Deno.test("data --augment ten-crop: 10 rows per training image, the centre crop for validation", async () => {
  await using dir = await tempDir();
  const images = await writeJpegFolder(`${dir.path}/images`, 4);
  const tokenizer = await writeTokenizer(`${dir.path}/tok`);
  const out = `${dir.path}/ten`;
  const source = await FolderSource.open(images, "folder:x");
  const manifest = await makeShards(source, out, options(tokenizer, { augment: "ten-crop" }));
  const train = splitIndices(source.count, "train"), val = splitIndices(source.count, "val");
  assert.deepEqual(manifest.counts, { train: 10 * train.length, val: val.length });
  assert.equal(manifest.augment, "ten-crop");
  const rows = await rowsOf(out, "train");
  assert.deepEqual(
    rows.labels,
    Array.from(train).flatMap((i) => new Array(10).fill(source.labels[i])),
  );
  // The first training image's ten rows are its ten crops (of the 17 px square) encoded.
  const file = `${images}/${source.nameOf(train[0])}`;
  const crops = tenCrop(await decodeImageFile(file, 17), 17, 16);
  const expected = await tokenizer.encodeImages(crops, 10, 16, [1, 2, 4], "cpu");
  assert.deepEqual(rows.codes.slice(0, 10).flat(), Array.from(expected));
  const valRows = await rowsOf(out, "val");
  const centre = await decodeImageFile(`${images}/${source.nameOf(val[0])}`, 16);
  assert.deepEqual(
    valRows.codes[0],
    Array.from(await tokenizer.encodeImages(centre, 1, 16, [1, 2, 4], "cpu")),
  );
});

Deno.test("a corrupt JPEG is skipped with one warning naming it, counted, and changes no other row", async () => {
  await using dir = await tempDir();
  const { images, dataArgs } = await folderWithTokenizer(dir.path);
  const args = (out: string) => dataArgs(out, "--shard-size", "4");
  const good = await runCli(args(`${dir.path}/good`));
  assert.equal(good.code, 0, good.stderr);
  const victim = "b/002.jpg";
  await Deno.writeFile(`${images}/${victim}`, new TextEncoder().encode("not a jpeg at all"));
  const bad = await runCli(args(`${dir.path}/bad`));
  assert.equal(bad.code, 0, bad.stderr);
  const warnings = bad.stderr.split("\n").filter((l) => /skipped/.test(l));
  assert.equal(warnings.length, 1, bad.stderr);
  assert.match(warnings[0], /^data: warning: skipped .*images\/b\/002\.jpg: cannot decode image/);
  assert.match(bad.stdout, /1 unreadable image skipped/);
  const manifest = await readManifest(`${dir.path}/bad`);
  assert.deepEqual(manifest.skipped, { count: 1, files: [victim] });
  // The split is over listed files: the other images keep their split and their rows.
  const listing = await listFolder(images);
  const index = listing.files.indexOf(victim);
  for (const split of ["train", "val"] as const) {
    const position = Array.from(splitIndices(listing.files.length, split)).indexOf(index);
    const before = await rowsOf(`${dir.path}/good`, split),
      after = await rowsOf(`${dir.path}/bad`, split);
    if (position >= 0) before.codes.splice(position, 1), before.labels.splice(position, 1);
    assert.deepEqual(after, before, split);
  }
});

type Recording = ImageTokenizer & { calls: number; batches: string[] };

/**
 * `tokenizer`, failing (as a crash would stop it) at encode call number `failAt`; it records
 * each call's batch (its row count and the sha256 of its pixels).
 */
function failingAfter(tokenizer: ImageTokenizer, failAt: number): Recording {
  const wrapper = Object.create(tokenizer) as Recording;
  wrapper.calls = 0;
  wrapper.batches = [];
  wrapper.encodeImages = (...args) => {
    if (++wrapper.calls === failAt) return Promise.reject(new Error("simulated crash"));
    const [pixels, n] = args;
    wrapper.batches.push(`${n} ${createHash("sha256").update(pixels).digest("hex")}`);
    return tokenizer.encodeImages(...args);
  };
  return wrapper;
}

/** console.error's lines while `work` runs. */
async function stderrLines(work: () => Promise<unknown>): Promise<string[]> {
  const lines: string[] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => void lines.push(args.join(" "));
  try {
    await work();
  } finally {
    console.error = original;
  }
  return lines;
}

Deno.test("an interrupted run continues after its last whole shard and ends with the same bytes", async () => {
  await using dir = await tempDir();
  const images = await writeJpegFolder(`${dir.path}/images`, 10);
  const tokenizer = await writeTokenizer(`${dir.path}/tok`);
  const source = await FolderSource.open(images, "folder:x");
  const o = options(tokenizer, { augment: "ten-crop", shardSize: 13, batchSize: 6 });
  const whole = `${dir.path}/whole`;
  const counting = failingAfter(tokenizer, Infinity);
  await makeShards(source, whole, { ...o, tokenizer: counting });
  const out = `${dir.path}/out`;
  // Shards of 13 rows cut images' ten crops apart: the journal records the crop to go on from.
  await assert.rejects(
    () => makeShards(source, out, { ...o, tokenizer: failingAfter(tokenizer, 25) }),
    /simulated crash/,
  );
  const partial = `${out}.partial`;
  const done = [...(await filesOf(partial)).keys()].filter((n) => n.endsWith(".npz"));
  assert.ok(done.length >= 5, `shards before the crash: ${done}`);
  const resumed = failingAfter(tokenizer, Infinity);
  const said = await stderrLines(() => makeShards(source, out, { ...o, tokenizer: resumed }));
  assert.ok(
    said.some((l) => /continuing the unfinished run .*: \d+ shards/.test(l)),
    said.join("\n"),
  );
  assert.ok(resumed.calls < counting.calls - 15, `${resumed.calls} of ${counting.calls} calls`);
  // The resumed run encodes the uninterrupted run's last batches, row for row: a batch's
  // composition could move a near-tie between two codes.
  assert.deepEqual(resumed.batches, counting.batches.slice(-resumed.batches.length));
  assertSameFiles(await filesOf(out), await filesOf(whole));
  assert.equal(await Deno.stat(partial).then(() => true, () => false), false);
});

Deno.test("resume redoes a damaged shard; other arguments start over", async () => {
  await using dir = await tempDir();
  const images = await writeJpegFolder(`${dir.path}/images`, 8);
  const tokenizer = await writeTokenizer(`${dir.path}/tok`);
  const source = await FolderSource.open(images, "folder:x");
  const out = `${dir.path}/out`, partial = `${out}.partial`;
  const crash = (o: MakeShardsOptions) =>
    assert.rejects(() => makeShards(source, out, { ...o, tokenizer: failingAfter(tokenizer, 4) }));
  const o = options(tokenizer, { shardSize: 3, batchSize: 2 });
  await crash(o);
  // A shard changed after the journal listed it is encoded again, with those after it.
  const first = await Deno.readFile(`${partial}/train-00000.npz`);
  first[first.length - 1] ^= 1;
  await Deno.writeFile(`${partial}/train-00000.npz`, first);
  const said = await stderrLines(() => makeShards(source, out, { ...o }));
  assert.ok(said.some((l) => /train-00000\.npz is missing or changed/.test(l)), said.join("\n"));
  await makeShards(source, `${dir.path}/whole`, o);
  assertSameFiles(await filesOf(out), await filesOf(`${dir.path}/whole`));
  // Another shard size: the unfinished run is dropped, and the result is that of a fresh run.
  await Deno.remove(out, { recursive: true });
  await crash(o);
  const other = { ...o, shardSize: 4 };
  const restart = await stderrLines(() => makeShards(source, out, { ...other }));
  assert.ok(
    restart.some((l) => /cannot be continued \(its shardSize differs\); starting over/.test(l)),
  );
  await makeShards(source, `${dir.path}/whole4`, other);
  assertSameFiles(await filesOf(out), await filesOf(`${dir.path}/whole4`));
  // A changed dataset file, too.
  await Deno.remove(out, { recursive: true });
  await crash(o);
  await Deno.copyFile(`${images}/a/000.jpg`, `${images}/a/001.jpg`);
  const changed = await FolderSource.open(images, "folder:x");
  const again = await stderrLines(() => makeShards(changed, out, { ...o }));
  assert.ok(
    again.some((l) => /the dataset's files changed\); starting over/.test(l)),
    again.join("\n"),
  );
  // A partial folder holding someone else's file is never emptied.
  await Deno.remove(out, { recursive: true });
  await Deno.mkdir(partial);
  await Deno.writeTextFile(`${partial}/notes.txt`, "keep");
  await assert.rejects(
    () => makeShards(source, out, o),
    /notes\.txt, which 'checkerboard data' did not write/,
  );
  assert.equal(await Deno.readTextFile(`${partial}/notes.txt`), "keep");
});

Deno.test("a partial folder another running data process holds is refused; a dead one's lock is taken over", async () => {
  await using dir = await tempDir();
  const images = await writeJpegFolder(`${dir.path}/images`, 3);
  const tokenizer = await writeTokenizer(`${dir.path}/tok`);
  const source = await FolderSource.open(images, "folder:x");
  const out = `${dir.path}/out`, partial = `${out}.partial`;
  const other = new Deno.Command("sleep", { args: ["60"] }).spawn();
  try {
    await Deno.mkdir(partial);
    await Deno.writeTextFile(`${partial}/lock`, `${other.pid}\n`);
    await assert.rejects(
      () => makeShards(source, out, options(tokenizer)),
      new RegExp(
        `out\\.partial is being written by another 'checkerboard data' run \\(process ${other.pid}\\)`,
      ),
    );
    assert.equal(await Deno.readTextFile(`${partial}/lock`), `${other.pid}\n`);
  } finally {
    other.kill("SIGKILL");
    await other.status;
  }
  // Its process is gone now: the lock is stale, and the run goes ahead.
  await makeShards(source, out, options(tokenizer));
  assert.ok(!(await filesOf(out)).has("lock"));
});

Deno.test("SIGKILL halfway through `data`, then the same command: byte-identical shards", async () => {
  await using dir = await tempDir();
  const { dataArgs } = await folderWithTokenizer(dir.path);
  const args = (out: string) => [
    "run",
    "-A",
    new URL("../cli/main.ts", import.meta.url).pathname,
    ...dataArgs(
      out,
      "--shard-size",
      "3",
      "--batch",
      "2",
      "--augment",
      "ten-crop",
      "--device",
      "cpu",
    ),
  ];
  const run = (out: string) =>
    new Deno.Command(Deno.execPath(), { args: args(out), stdout: "null", stderr: "null" });
  assert.equal((await run(`${dir.path}/whole`).output()).code, 0);
  const total = [...(await filesOf(`${dir.path}/whole`)).keys()].length - 1;
  const out = `${dir.path}/out`;
  const child = run(out).spawn();
  const half = Math.floor(total / 2);
  for (let waited = 0;; waited += 10) {
    const names: string[] = [];
    try {
      for await (const e of Deno.readDir(`${out}.partial`)) names.push(e.name);
    } catch { /* not made yet */ }
    if (names.filter((n) => /\.npz$/.test(n)).length >= half) break;
    assert.ok(waited < 120_000, "no shards appeared");
    await new Promise((r) => setTimeout(r, 10));
  }
  child.kill("SIGKILL");
  assert.equal((await child.status).signal, "SIGKILL");
  assert.equal((await run(out).output()).code, 0);
  assertSameFiles(await filesOf(out), await filesOf(`${dir.path}/whole`));
});

Deno.test("the manifest's skipped and augment fields are checked; older manifests lack them", () => {
  const base = {
    format: "checkerboard-shards",
    version: 1,
    dataset: "folder:x",
    imageSide: 16,
    tokenizer: { hash: "h", patch: 4, codes: 16, path: "../tok" },
    ratio: "2",
    scales: [1, 2, 4],
    patch: 4,
    codes: 16,
    sequenceLength: 21,
    classes: ["a"],
    counts: { train: 3, val: 1 },
    shards: [{ file: "train-00000.npz", split: "train", count: 3 }, {
      file: "val-00000.npz",
      split: "val",
      count: 1,
    }],
  };
  const old = parseManifest(base, "m.json");
  assert.equal(old.skipped, undefined);
  assert.equal(old.augment, undefined);
  const now = parseManifest({
    ...base,
    augment: "ten-crop",
    skipped: { count: 2, files: ["a/x.jpg"] },
  }, "m.json");
  assert.deepEqual(now.skipped, { count: 2, files: ["a/x.jpg"] });
  assert.equal(now.augment, "ten-crop");
  assert.throws(
    () => parseManifest({ ...base, augment: "five-crop" }, "m.json"),
    /m\.json: 'augment' must be one of/,
  );
  assert.throws(
    () => parseManifest({ ...base, skipped: { count: 0, files: ["a/x.jpg"] } }, "m.json"),
    /'skipped\.files' must name at most 'count' \(0\)/,
  );
  assert.throws(
    () => parseManifest({ ...base, skipped: { count: -1, files: [] } }, "m.json"),
    /skipped\.count/,
  );
});
