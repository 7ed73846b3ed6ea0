/**
 * Every command that takes a tokenizer, on a `vq` tokenizer: data (ten-crop), train, eval,
 * sample and tokenizer recon. The tokenizer is a small random-weight network of LlamaGen's
 * structure (3 levels, so 4 px per code), so this runs without the ../shared fixture (as in CI)
 * and in seconds; the images mean nothing, the test checks shapes, counts and determinism.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { VQ_TOKENIZER_FORMAT, vqTensorHash, VqTokenizer } from "../src/tokenizer/vq_tokenizer.ts";
import { type VqArchitecture, vqTensorShapes } from "../src/tokenizer/vq_architecture.ts";
import { readNpz } from "../src/data/npy.ts";
import { Rng } from "../src/util/rng.ts";
import { randomNormals, runCli, tempDir } from "./helpers.ts";
import { writeMixedImages } from "./mixed_images.ts";

const ARCH: VqArchitecture = {
  ch: 32,
  chMult: [1, 1, 2],
  zChannels: 32,
  codes: 64,
  codeDim: 8,
  encoderBlocks: 1,
  decoderBlocks: 1,
};

/** A random-weight tokenizer of ARCH: convs scaled by 1/sqrt(fan-in), GroupNorm at identity. */
function randomVqTokenizer(seed: number): VqTokenizer {
  const rng = new Rng(seed);
  const tensors: VqTokenizer["tensors"] = {};
  for (const [name, shape] of vqTensorShapes(ARCH)) {
    const count = shape.reduce((a, b) => a * b, 1);
    const fanIn = shape.length === 4 ? shape[1] * shape[2] * shape[3] : shape[shape.length - 1];
    const data = name.includes("norm") && name.endsWith(".weight")
      ? new Float32Array(count).fill(1)
      : name.endsWith(".bias")
      ? new Float32Array(count)
      : randomNormals(count, rng, name.startsWith("quantize") ? 1 : 1 / Math.sqrt(fanIn));
    tensors[name] = { shape, data };
  }
  return new VqTokenizer({
    format: VQ_TOKENIZER_FORMAT,
    version: 1,
    architecture: ARCH,
    codes: ARCH.codes,
    codeDim: ARCH.codeDim,
    patch: 4,
    source: { kind: "llamagen", file: "random.pt", sha256: "0".repeat(64) },
    codebook: { origin: "imported" },
    hash: vqTensorHash(ARCH, tensors),
  }, tensors);
}

async function cli(args: string[]) {
  const r = await runCli(args);
  assert.equal(r.code, 0, `checkerboard ${args.join(" ")}\n${r.stderr}`);
  return r;
}

const sha256 = async (path: string) =>
  createHash("sha256").update(await Deno.readFile(path)).digest("hex");

Deno.test("a vq tokenizer through data, train, eval, sample and recon", async () => {
  await using dir = await tempDir();
  const tok = join(dir.path, "vq"), images = join(dir.path, "images");
  await randomVqTokenizer(3).save(tok);
  await writeMixedImages(images, 40, 5); // 4 classes, 24-223 px
  const shards = join(dir.path, "shards");
  await cli([
    "data",
    "--tokenizer",
    tok,
    "--dataset",
    `folder:${images}`,
    "--side",
    "16",
    "--augment",
    "ten-crop",
    "--out",
    shards,
    "--device",
    "cpu",
  ]);
  const manifest = JSON.parse(await Deno.readTextFile(join(shards, "manifest.json")));
  assert.deepEqual(manifest.scales, [1, 2, 4]);
  assert.equal(manifest.counts.train, 10 * 36, "ten crops of each of the 36 training images");
  assert.equal(manifest.counts.val, 4, "one centre crop per validation image");
  assert.equal(manifest.tokenizer.patch, 4);

  const run = join(dir.path, "run");
  await cli([
    "train",
    "--data",
    shards,
    "--out",
    run,
    "--model",
    "tiny",
    "--depth",
    "1",
    "--width",
    "64",
    "--heads",
    "2",
    "--iters",
    "4",
    "--eval-batches",
    "1",
    "--device",
    "cpu",
  ]);
  const evalOut = await cli([
    "eval",
    "nll",
    "--model",
    run,
    "--data",
    shards,
    "--steps-per-scale",
    "2",
    "--device",
    "cpu",
  ]);
  assert.match(evalOut.stdout, /P=2 .* \d+\.\d+/);

  const samples = [join(dir.path, "s1"), join(dir.path, "s2")];
  for (const out of samples) {
    await cli(["sample", "--model", run, "--per-class", "1", "--seed", "3", "--out", out]);
  }
  const npz = await readNpz(join(samples[0], "samples.npz"));
  assert.deepEqual(npz.arr_0.shape, [4, 16, 16, 3], "images decoded by the VQ decoder");
  assert.equal(
    await sha256(join(samples[0], "samples.npz")),
    await sha256(join(samples[1], "samples.npz")),
    "one seed, the same bytes",
  );

  const recon = await cli([
    "tokenizer",
    "recon",
    "--tokenizer",
    tok,
    "--dataset",
    `folder:${images}`,
    "--side",
    "16",
    "--scales",
    "1,2,4",
    "--out",
    join(dir.path, "recon.png"),
    "--json",
  ]);
  assert.match(recon.stdout, /psnr/i);
});
