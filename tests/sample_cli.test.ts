/**
 * `checkerboard sample` as a user runs it: --help, bad options and files with their one-line
 * errors and exit codes, an output folder that cannot be written, and (where the addon has the
 * native sampler) an end-to-end run on a tiny randomly initialised checkpoint.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import sharp from "sharp";
import { NativeModel } from "../src/model/native_model.ts";
import { buildModelConfig } from "../src/model/config.ts";
import { writeCheckpoint } from "../src/model/checkpoint.ts";
import { PatchTokenizer, TOKENIZER_FORMAT, tokenizerHash } from "../src/tokenizer/patch_vq.ts";
import { readNpz } from "../src/data/npy.ts";
import { textBlockHeight } from "../src/sample/render.ts";
import { textWidth } from "../src/sample/plot.ts";
import { cudaStatus, nativeAddon } from "../src/engine.ts";
import { Rng } from "../src/util/rng.ts";
import { expectOneLineError, runCli, tempDir } from "./helpers.ts";

const PATCH = 2, CODES = 16;

/** Writes a tokenizer with a random codebook (seeded); returns its hash. */
async function writeTokenizer(dir: string, scales: number[], seed = 1): Promise<string> {
  const rng = new Rng(seed);
  const codebook = Float32Array.from({ length: CODES * PATCH * PATCH * 3 }, () => rng.next());
  const hash = tokenizerHash(PATCH, CODES, codebook);
  await new PatchTokenizer({
    format: TOKENIZER_FORMAT,
    version: 1,
    patch: PATCH,
    codes: CODES,
    channels: 3,
    imageSide: scales[scales.length - 1] * PATCH,
    dataset: "synthetic",
    fitScales: scales,
    hash,
    fit: { iterations: 0, seed: 0, patches: 0, mse: [] },
  }, codebook).save(dir);
  return hash;
}

/**
 * A checkpoint of a tiny randomly initialised model (3 classes, scales 1,2,4, patch 2: 8x8
 * images) with its tokenizer in CKPT/tokenizer.
 */
async function makeCheckpoint(dir: string, scales = [1, 2, 4]): Promise<string> {
  const hash = await writeTokenizer(join(dir, "tokenizer"), scales);
  const config = buildModelConfig({
    preset: "tiny",
    depth: 1,
    width: 32,
    heads: 2,
    vocab: CODES,
    latentDim: PATCH * PATCH * 3,
    classes: 3,
    scales,
  });
  const model = NativeModel.create(config, "cpu", 7);
  try {
    await writeCheckpoint(dir, model.params, { params: model.getState("params") }, {
      config,
      step: 0,
      tokenizerHash: hash,
      scales,
      patch: PATCH,
      order: "checkerboard",
      classes: ["zero", "one", "two"],
      training: {},
    });
  } finally {
    model.dispose();
  }

  return dir;
}

/** True when the addon has the native sampler (it may be built before or after this file). */
function hasNativeSampler(): boolean {
  try {
    const addon = nativeAddon() as unknown as { Model: { prototype: Record<string, unknown> } };
    return typeof addon.Model.prototype.sample === "function";
  } catch {
    return false;
  }
}

function cudaAvailable(): boolean {
  try {
    return cudaStatus().available;
  } catch {
    return false;
  }
}

async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    out.push(e.name);
    if (e.isDirectory) {
      out.push(...(await listTree(join(dir, e.name))).map((n) => `${e.name}/${n}`));
    }
  }
  return out.sort();
}

Deno.test("sample --help lists the options and the outputs", async () => {
  const r = await runCli(["sample", "--help"]);
  assert.equal(r.code, 0, r.stderr);
  for (
    const word of [
      "--model",
      "--classes",
      "--per-class",
      "--steps-per-scale",
      "--cfg",
      "--top-p",
      "--progressive",
      "--entropy",
      "samples.npz",
      "arr_0",
    ]
  ) {
    assert.match(r.stdout, new RegExp(word.replace(/[-]/g, "\\-")), word);
  }
  const top = await runCli(["--help"]);
  assert.match(top.stdout, /\n {2}sample +sample class-conditional images/);
});

Deno.test("sample: bad options are usage errors (exit 2)", async () => {
  const cases: [string[], RegExp][] = [
    [["--steps-per-scale", "0"], /--steps-per-scale must be at least 1/],
    [["--steps-per-scale", "4,0,4"], /--steps-per-scale must be at least 1/],
    [["--per-class", "2", "--count", "5"], /--per-class or --count, not both/],
    [["--classes", "random", "--per-class", "2"], /give --count, not --per-class/],
    [["--classes", "1,,2"], /--classes must be all, random, or a comma list/],
    [["--top-p", "0"], /--top-p must be greater than 0/],
    [["--temperature=-1"], /--temperature must be in \[0, 100\], got -1/],
    [["--order", "spiral"], /--order must be one of/],
    [["--bogus"], /unknown option '--bogus'/],
    [["--out", ""], /^checkerboard: error: --out needs a folder, got ''$/m],
    [["--count", "1000000000000"], /--count must be at most 1000000, got 1000000000000/],
    [["--per-class", "99999999999999999999"], /--per-class must be an integer/],
    [["--seed", "-1"], /--seed must be at least 0, got -1/],
    [["--cfg", "-1"], /--cfg must be in \[0, 100\], got -1/],
    [["stray"], /unexpected argument 'stray'/],
    [["--cfg", "1000"], /--cfg must be in \[0, 100\], got 1000/],
    [["--cfg-start", "999999999999"], /--cfg-start must be at most 2147483647/],
    [["--top-k", "99999999999"], /--top-k must be at most 2147483647/],
  ];
  for (const [args, pattern] of cases) {
    const r = await expectOneLineError(["sample", ...args], pattern);
    assert.equal(r.code, 2, args.join(" "));
  }
});

Deno.test("sample: bad checkpoints, tokenizers, classes and plans are one-line errors (exit 1)", async () => {
  await using tmp = await tempDir();
  const ckpt = await makeCheckpoint(join(tmp.path, "ckpt"));
  const other = join(tmp.path, "other-tok");
  const otherHash = await writeTokenizer(other, [1, 2, 4], 2);
  const ownHash =
    JSON.parse(await Deno.readTextFile(join(ckpt, "tokenizer", "tokenizer.json"))).hash;
  const out = join(tmp.path, "out");
  // A checkpoint folder whose model file was cut short.
  const cut = join(tmp.path, "cut");
  await Deno.mkdir(cut);
  const bytes = await Deno.readFile(join(ckpt, "model.safetensors"));
  await Deno.writeFile(join(cut, "model.safetensors"), bytes.subarray(0, bytes.length >> 1));
  const cases: [string[], RegExp][] = [
    [["--model", join(tmp.path, "nope")], /nope.*not found/],
    [["--model", cut], /cut.model\.safetensors: not a valid safetensors file/],
    [
      ["--model", ckpt, "--classes", "0,12"],
      /class 12 is out of range; .* has 3 classes, 0\.\.2: zero, one, two/,
    ],
    [
      ["--model", ckpt, "--classes", "zero,bogus"],
      /no class 'bogus' in .*; its 3 classes are: 0 zero, 1 one, 2 two$/m,
    ],
    [
      ["--model", ckpt, "--tokenizer", join(ckpt, "model.safetensors")],
      /is a file; give the tokenizer folder/,
    ],
    [
      ["--model", ckpt, "--steps-per-scale", "1,2"],
      /--steps-per-scale lists 2 values but .* has 3 scales \(1,2,4\)/,
    ],
    [
      ["--model", ckpt, "--tokenizer", other],
      new RegExp(
        `checkpoint from another tokenizer: .* tokenizer hash ${ownHash} but .*other-tok has ` +
          `hash ${otherHash}`,
      ),
    ],
    [
      ["--model", ckpt, "--tokenizer", join(tmp.path, "none")],
      /--tokenizer .*none: no such folder$/m,
    ],
  ];
  for (const [args, pattern] of cases) {
    const r = await expectOneLineError(["sample", ...args, "--out", out], pattern);
    assert.equal(r.code, 1, args.join(" "));
  }
  // Each was refused before the output folder was made.
  await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound);
  const noTok = join(tmp.path, "no-tok");
  await makeCheckpoint(noTok);
  await Deno.remove(join(noTok, "tokenizer"), { recursive: true });
  const r = await expectOneLineError(
    ["sample", "--model", noTok, "--out", out],
    /has no tokenizer\/ folder .* give --tokenizer DIR/,
  );
  assert.equal(r.code, 1);
  assert.equal(await Deno.stat(out).catch(() => null), null, "no output folder after errors");
});

Deno.test("sample: an output folder that cannot be written fails before sampling, leaving nothing", async () => {
  await using tmp = await tempDir();
  const ckpt = await makeCheckpoint(join(tmp.path, "ckpt"));
  const file = join(tmp.path, "a-file");
  await Deno.writeTextFile(file, "not a folder\n");
  const before = await listTree(tmp.path);
  const a = await expectOneLineError(
    ["sample", "--model", ckpt, "--out", file, "--device", "cpu"],
    /--out .*a-file exists and is not a folder/,
  );
  assert.equal(a.code, 1);
  const b = await expectOneLineError(
    ["sample", "--model", ckpt, "--out", join(file, "deeper", "out"), "--device", "cpu"],
    /cannot create the output folder .*a-file.deeper.out: /,
  );
  assert.equal(b.code, 1);
  assert.deepEqual(await listTree(tmp.path), before, "nothing written");
  assert.equal(await Deno.readTextFile(file), "not a folder\n");
});

Deno.test({
  name: "sample: a failure after the output folder was made removes it again",
  ignore: cudaAvailable(),
  async fn() {
    await using tmp = await tempDir();
    const ckpt = await makeCheckpoint(join(tmp.path, "ckpt"));
    const out = join(tmp.path, "made", "here");
    const r = await expectOneLineError(
      ["sample", "--model", ckpt, "--out", out, "--device", "cuda"],
      /--device cuda: CUDA is not available/,
    );
    assert.equal(r.code, 1);
    assert.equal(await Deno.stat(join(tmp.path, "made")).catch(() => null), null);
  },
});

Deno.test({
  name: "sample end to end on a tiny random checkpoint: grid, npz, images, progressive, entropy",
  ignore: !hasNativeSampler(),
  async fn() {
    await using tmp = await tempDir();
    const ckpt = await makeCheckpoint(join(tmp.path, "ckpt"));
    const out = join(tmp.path, "new", "samples");
    const r = await runCli([
      "sample",
      "--model",
      ckpt,
      "--classes",
      "two,0",
      "--per-class",
      "3",
      "--steps-per-scale",
      "1,2,4",
      "--batch",
      "4",
      "--device",
      "cpu",
      "--out",
      out,
      "--individual",
      "--progressive",
      "--entropy",
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /7 steps/);
    assert.match(r.stdout, /ms per image, [\d.]+ images\/s/);
    assert.match(r.stdout, /wrote .*grid\.png/);
    const files = await listTree(out);
    assert.deepEqual(files, [
      "entropy-maps.png",
      "entropy.json",
      "entropy.png",
      "grid.png",
      "images",
      "images/00000-2-two.png",
      "images/00001-2-two.png",
      "images/00002-2-two.png",
      "images/00003-0-zero.png",
      "images/00004-0-zero.png",
      "images/00005-0-zero.png",
      "progressive.png",
      "samples.npz",
    ]);
    const npz = await readNpz(join(out, "samples.npz"));
    assert.deepEqual(npz.arr_0.shape, [6, 8, 8, 3]);
    assert.ok(npz.arr_0.data instanceof Uint8Array);
    assert.ok(npz.labels.data instanceof Int32Array);
    assert.deepEqual(Array.from(npz.labels.data), [2, 2, 2, 0, 0, 0]);
    // grid: 2 rows (classes 2 and 0) of 3 images of 8 px with 2 px gaps, right of a label
    // column with the class names (font scale 1 below 24 px, 3 px padding each side).
    const grid = await sharp(join(out, "grid.png")).metadata();
    const rowH = Math.max(8, textBlockHeight(1, 1));
    const labelW = Math.max(textWidth("two", 1), textWidth("zero", 1)) + 6;
    assert.deepEqual([grid.width, grid.height], [labelW + 3 * 8 + 4 * 2, 2 * rowH + 3 * 2]);
    // progressive: one row per class, one panel per step (1 + 2 + 4 = 7), panels enlarged to
    // 128 px, the step labels above them and the class names left of them.
    const prog = await sharp(join(out, "progressive.png")).metadata();
    const header = textBlockHeight(2, 2) + 2 * 6;
    const progLabelW = Math.max(textWidth("two", 2), textWidth("zero", 2)) + 12;
    assert.deepEqual(
      [prog.width, prog.height],
      [progLabelW + 7 * 128 + 8 * 2, header + 2 * 128 + 3 * 2],
    );
    const entropy = JSON.parse(await Deno.readTextFile(join(out, "entropy.json")));
    assert.equal(entropy.steps.length, 7);
    assert.deepEqual(entropy.steps.map((s: { scale: number }) => s.scale), [1, 2, 2, 4, 4, 4, 4]);
    for (const s of entropy.steps) {
      assert.ok(s.p25 <= s.p75, `quartiles of step ${s.step}`);
      assert.ok(s.mean >= 0 && s.mean <= Math.log2(CODES) + 1e-3, `entropy ${s.mean} bits`);
    }
    assert.deepEqual(entropy.maps.map((m: { mean: number[] }) => m.mean.length), [1, 4, 16]);

    // The same seed gives the same images, whatever the batch size.
    const again = join(tmp.path, "again");
    const r2 = await runCli([
      "sample",
      "--model",
      ckpt,
      "--classes",
      "2,0",
      "--per-class",
      "3",
      "--steps-per-scale",
      "1,2,4",
      "--batch",
      "5",
      "--device",
      "cpu",
      "--out",
      again,
    ]);
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual(await listTree(again), ["grid.png", "samples.npz"]);
    const npz2 = await readNpz(join(again, "samples.npz"));
    assert.deepEqual(npz2.arr_0.data, npz.arr_0.data);

    // The folder is not empty now: a second run is refused before sampling, unless --force.
    const before = await Deno.readFile(join(again, "grid.png"));
    const base = ["sample", "--model", join(ckpt, "model.safetensors"), "--device", "cpu"];
    const refused = await expectOneLineError(
      [...base, "--tokenizer", join(ckpt, "tokenizer", "tokenizer.json"), "--out", again],
      /--out .*again is not empty \(grid\.png, samples\.npz\); give --force/,
    );
    assert.equal(refused.code, 1);
    assert.deepEqual(await Deno.readFile(join(again, "grid.png")), before);
    const forced = await runCli([...base, "--per-class", "1", "--out", again, "--force"]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.notDeepEqual(await Deno.readFile(join(again, "grid.png")), before);
  },
});

Deno.test({
  name: "sample --count with random classes groups the grid by class",
  ignore: !hasNativeSampler(),
  async fn() {
    await using tmp = await tempDir();
    const ckpt = await makeCheckpoint(join(tmp.path, "ckpt"));
    const out = join(tmp.path, "out");
    const r = await runCli([
      "sample",
      "--model",
      ckpt,
      "--classes",
      "random",
      "--count",
      "7",
      "--seed",
      "3",
      "--device",
      "cpu",
      "--out",
      out,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const npz = await readNpz(join(out, "samples.npz"));
    assert.deepEqual(npz.arr_0.shape, [7, 8, 8, 3]);
    const labels = Array.from(npz.labels.data);
    assert.ok(labels.every((l) => l >= 0 && l < 3));
    const counts = [0, 1, 2].map((c) => labels.filter((l) => l === c).length).filter((k) => k);
    const grid = await sharp(join(out, "grid.png")).metadata();
    const cols = Math.max(...counts), rowH = Math.max(8, textBlockHeight(1, 1));
    const present = ["zero", "one", "two"].filter((_, c) => labels.includes(c));
    const labelW = Math.max(...present.map((name) => textWidth(name, 1))) + 6;
    assert.deepEqual(
      [grid.width, grid.height],
      [labelW + cols * 8 + (cols + 1) * 2, counts.length * rowH + (counts.length + 1) * 2],
    );
  },
});
