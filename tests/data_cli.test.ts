/** The tokenizer and data commands end to end on a small folder dataset, and their errors. */
import assert from "node:assert/strict";
import { readManifest, streamBatches } from "../src/data/shards.ts";
import { expectOneLineError, folderNames, mountTmpfs, runCli, tempDir } from "./helpers.ts";
import { writeShapesFolder } from "./fixtures.ts";
import { writeTokenizer } from "./shard_fixture.ts";

Deno.test("tokenizer fit, recon and data write readable files", async () => {
  await using dir = await tempDir();
  const images = await writeShapesFolder(`${dir.path}/images`, 15, 16);
  const tok = `${dir.path}/tok`;
  const fit = await runCli([
    "tokenizer",
    "fit",
    "--dataset",
    `folder:${images}`,
    "--side",
    "16",
    "--patch",
    "4",
    "--codes",
    "16",
    "--iterations",
    "4",
    "--out",
    tok,
    "--device",
    "cpu",
  ]);
  assert.equal(fit.code, 0, fit.stderr);
  assert.deepEqual(await folderNames(tok), ["tokenizer.json", "tokenizer.safetensors"]);

  const recon = await runCli([
    "tokenizer",
    "recon",
    "--tokenizer",
    tok,
    "--out",
    `${dir.path}/grid.png`,
    "--count",
    "2",
    "--json",
  ]);
  assert.equal(recon.code, 0, recon.stderr);
  const report = JSON.parse(recon.stdout);
  assert.deepEqual(report.scales.map((s: { side: number }) => s.side), [1, 2, 4]);
  assert.ok(report.finalPsnrDb > 15, `final PSNR ${report.finalPsnrDb}`);
  const png = await Deno.readFile(`${dir.path}/grid.png`);
  assert.deepEqual(Array.from(png.subarray(1, 4)), [0x50, 0x4e, 0x47]);

  const shards = `${dir.path}/shards`;
  const data = await runCli([
    "data",
    "--tokenizer",
    tok,
    "--ratio",
    "2",
    "--out",
    shards,
    "--shard-size",
    "10",
  ]);
  assert.equal(data.code, 0, data.stderr);
  const manifest = await readManifest(shards);
  assert.deepEqual(manifest.scales, [1, 2, 4]);
  assert.equal(manifest.sequenceLength, 21);
  assert.deepEqual(manifest.classes, ["bars", "blocks"]);
  assert.equal(manifest.counts.train + manifest.counts.val, 30);
  assert.equal(manifest.counts.val, 3);
  assert.deepEqual(await folderNames(shards), [
    "manifest.json",
    "train-00000.npz",
    "train-00001.npz",
    "train-00002.npz",
    "val-00000.npz",
  ]);

  // The streaming reader serves every training row once per epoch, shuffled.
  const seen: number[] = [];
  for await (
    const b of streamBatches(shards, manifest, "train", { batchSize: 4, shuffle: true, seed: 3 })
  ) {
    assert.equal(b.codes.length, b.labels.length * 21);
    assert.ok(b.codes.every((c) => c < 16));
    seen.push(...b.labels);
  }
  assert.equal(seen.length, manifest.counts.train);

  // An existing output is not replaced without --force.
  const again = await runCli(["data", "--tokenizer", tok, "--out", shards]);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /already exists \(use --force/);
});

Deno.test("a truncated shard is reported with its file name", async () => {
  await using dir = await tempDir();
  const images = await writeShapesFolder(`${dir.path}/images`, 6, 16);
  const tok = `${dir.path}/tok`;
  const shards = `${dir.path}/shards`;
  assert.equal(
    (await runCli([
      "tokenizer",
      "fit",
      "--dataset",
      `folder:${images}`,
      "--side",
      "16",
      "--codes",
      "8",
      "--iterations",
      "2",
      "--out",
      tok,
    ])).code,
    0,
  );
  assert.equal((await runCli(["data", "--tokenizer", tok, "--out", shards])).code, 0);
  const path = `${shards}/train-00000.npz`;
  const bytes = await Deno.readFile(path);
  await Deno.writeFile(path, bytes.subarray(0, bytes.length - 40));
  const manifest = await readManifest(shards);
  await assert.rejects(async () => {
    for await (const _ of streamBatches(shards, manifest, "train", { batchSize: 2 })) {
      /* consume */
    }
  }, /train-00000\.npz/);
});

Deno.test("bad input: one-line errors, non-zero exit, no partial output", async () => {
  await using dir = await tempDir();
  const cases: [string[], RegExp][] = [
    [
      ["tokenizer", "fit", "--dataset", "cifar", "--out", `${dir.path}/t1`],
      /unknown dataset 'cifar'/,
    ],
    [
      ["tokenizer", "fit", "--dataset", `folder:${dir.path}/missing`, "--out", `${dir.path}/t2`],
      /missing: dataset folder not found/,
    ],
    [
      ["data", "--tokenizer", `${dir.path}/none`, "--out", `${dir.path}/s1`],
      /none\/tokenizer\.json: not found/,
    ],
    [["tokenizer", "fit", "--patch", "0", "--out", `${dir.path}/t3`], /--patch must be at least 1/],
    [["tokenizer", "fit"], /--out is required/],
    [["tokenizer", "fit", "--bogus", "--out", "x"], /bogus/],
    [
      ["data", "--tokenizer", `${dir.path}/none`, "--out", `${dir.path}/s2`, "--augment", "flip"],
      /--augment must be one of none, ten-crop, got 'flip'/,
    ],
  ];
  for (const [args, pattern] of cases) await expectOneLineError(args, pattern);
  // A corrupt image stops `tokenizer fit` before anything is written.
  const images = await writeShapesFolder(`${dir.path}/images`, 3, 16);
  await Deno.writeFile(`${images}/bars/zz.png`, new TextEncoder().encode("not a png"));
  const r = await runCli([
    "tokenizer",
    "fit",
    "--dataset",
    `folder:${images}`,
    "--side",
    "16",
    "--codes",
    "4",
    "--out",
    `${dir.path}/t4`,
  ]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /zz\.png: cannot decode image/);
  assert.deepEqual((await folderNames(dir.path)).filter((n) => n.startsWith("t")), []);
});

Deno.test("help texts list the options with their defaults", async () => {
  const top = await runCli(["--help"]);
  assert.equal(top.code, 0);
  for (const name of ["info", "order", "plan", "tokenizer", "data"]) {
    assert.match(top.stdout, new RegExp(`\\b${name}\\b`));
  }
  const fit = await runCli(["tokenizer", "fit", "--help"]);
  assert.equal(fit.code, 0);
  assert.match(fit.stdout, /--codes K\s+codebook size \(default: 512\)/);
  assert.match(fit.stdout, /--patch p .*\(default: 4\)/);
  const data = await runCli(["data", "--help"]);
  assert.match(data.stdout, /--ratio R .*\(default: 2\)/);
  assert.match(data.stdout, /--shard-size N .*\(default: 4096\)/);
  assert.match(data.stdout, /--augment none\|ten-crop .*\(default: none\)/);
  assert.match(data.stdout, /Validation images always get\s+the centre crop only/);
});

/** `data` of a folder dataset with a given tokenizer into `out`. */
function folderDataArgs(images: string, tok: string, out: string): string[] {
  return ["data", "--dataset", `folder:${images}`, "--tokenizer", tok, "--out", out];
}

Deno.test("data --force never replaces a file or a folder that is not a shard folder", async () => {
  await using dir = await tempDir();
  const images = await writeShapesFolder(`${dir.path}/images`, 3, 16);
  const tok = `${dir.path}/tok`;
  await writeTokenizer(tok);
  const data = (out: string) => [...folderDataArgs(images, tok, out), "--force"];
  const file = `${dir.path}/notes.txt`;
  await Deno.writeTextFile(file, "keep me");
  await expectOneLineError(data(file), /--out .*notes\.txt is a file, not a folder/);
  assert.equal(await Deno.readTextFile(file), "keep me");
  const folder = `${dir.path}/work`;
  await Deno.mkdir(folder);
  await Deno.writeTextFile(`${folder}/thesis.tex`, "keep me too");
  await expectOneLineError(data(folder), /work is a folder that holds no manifest\.json/);
  assert.equal(await Deno.readTextFile(`${folder}/thesis.tex`), "keep me too");
  // A shard folder, and an empty folder, are replaced.
  const shards = `${dir.path}/shards`;
  await Deno.mkdir(shards);
  assert.equal((await runCli(data(shards))).code, 0);
  assert.equal((await runCli(data(shards))).code, 0);
  assert.ok((await folderNames(shards)).includes("manifest.json"));
  assert.deepEqual((await folderNames(dir.path)).filter((n) => n.includes("partial")), []);
});

Deno.test("data into a read-only location is one clear line", async () => {
  await using dir = await tempDir();
  const images = await writeShapesFolder(`${dir.path}/images`, 3, 16);
  const tok = `${dir.path}/tok`;
  await writeTokenizer(tok);
  const args = (out: string) => folderDataArgs(images, tok, out);
  // Below a file: the folder cannot be made.
  await Deno.writeTextFile(`${dir.path}/f`, "");
  await expectOneLineError(
    args(`${dir.path}/f/shards`),
    /--out .*f\/shards: cannot check it: Not a directory/,
  );
  const unmount = await mountTmpfs(`${dir.path}/ro`, "ro,size=1m");
  if (unmount) {
    try {
      await expectOneLineError(
        args(`${dir.path}/ro/shards`),
        /cannot create .*ro\/shards\.partial: Read-only file system/,
      );
    } finally {
      await unmount();
    }
  }
});

Deno.test("data refuses a dataset whose training split would lack a class", async () => {
  await using dir = await tempDir();
  const tok = `${dir.path}/tok`;
  await writeTokenizer(tok);
  const images = await writeShapesFolder(`${dir.path}/images`, 1, 16);
  const args = (dataset: string) => [
    "data",
    "--dataset",
    `folder:${dataset}`,
    "--tokenizer",
    tok,
    "--out",
    `${dir.path}/s`,
  ];
  // Two classes of one image each: one of them is held out for validation.
  await expectOneLineError(
    args(images),
    /class '(bars|blocks)' has no image in the training split/,
  );
  await Deno.remove(`${images}/blocks`, { recursive: true });
  await expectOneLineError(
    args(images),
    /has 1 image: too few for a training and a validation split/,
  );
  assert.deepEqual((await folderNames(dir.path)).sort(), ["images", "tok"]);
});
