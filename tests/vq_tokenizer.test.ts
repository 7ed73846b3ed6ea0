/**
 * The `vq` tokenizer kind (src/tokenizer/vq_tokenizer.ts): import of the random-weight LlamaGen
 * VQ-16 fixture (../shared/fixtures/llamagen-vq-small; the tests that need it are ignored where
 * it is absent, as in CI), its folder files and their checks, per-scale encoding and decoding on
 * the engine, and the codebook retraining of paper section 4.1.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { UserError } from "../src/errors.ts";
import { decodeTorchCheckpoint } from "../src/tokenizer/torch_checkpoint.ts";
import {
  CODEBOOK_KEY,
  deriveArchitecture,
  vqTensorShapes,
} from "../src/tokenizer/vq_architecture.ts";
import {
  imagesToInput,
  outputToPixels,
  VQ_TOKENIZER_FORMAT,
  VqTokenizer,
} from "../src/tokenizer/vq_tokenizer.ts";
import { loadTokenizer } from "../src/tokenizer/load.ts";
import { openSizedImages } from "../src/tokenizer/retrain_images.ts";
import { retrainCodebook, sphericalKMeans } from "../src/tokenizer/retrain_codebook.ts";
import { Rng } from "../src/util/rng.ts";
import { randomNormals, tempDir } from "./helpers.ts";
import { floatStorage, stateDictPickle, tensorOps, torchZip } from "./torch_pickles.ts";
import { writeMixedImages } from "./mixed_images.ts";
import {
  haveVqFixture,
  readVqReference,
  VQ_FIXTURE,
  VQ_FIXTURE_ARCHITECTURE,
  VQ_FIXTURE_PT,
} from "./vq_fixture.ts";

const spec = haveVqFixture
  ? JSON.parse(await Deno.readTextFile(join(VQ_FIXTURE, "vq_small.json")))
  : undefined;

/** One fixture import shared by the tests (reading 18 MB once). */
let imported: Promise<VqTokenizer> | undefined;
const fixtureTokenizer = () => imported ??= VqTokenizer.importLlamagen(VQ_FIXTURE_PT);

/** An array of the fixture's npz by name, its values as numbers. */
async function refArray(name: string): Promise<{ shape: number[]; values: number[] }> {
  const { shape, data } = (await readVqReference())[name];
  return { shape, values: Array.from(data, Number) };
}

const fixtureTest = (name: string, fn: () => Promise<void>) =>
  Deno.test({ name, ignore: !haveVqFixture, fn, sanitizeResources: false, sanitizeOps: false });

fixtureTest(
  "import: the fixture's architecture, codebook and source are read and described",
  async () => {
    const tok = await fixtureTokenizer();
    assert.deepEqual(tok.architecture, VQ_FIXTURE_ARCHITECTURE);
    assert.equal(tok.kind, "vq");
    assert.equal(tok.patch, 16);
    assert.equal(tok.dim, 8);
    assert.equal(tok.codes, 512);
    assert.equal(tok.fixedSide, undefined);
    assert.equal(tok.defaultSide, 256);
    assert.equal(tok.config.format, VQ_TOKENIZER_FORMAT);
    assert.deepEqual(tok.config.source, {
      kind: "llamagen",
      file: "vq_small.pt",
      sha256: spec.checkpoint.sha256,
    });
    assert.deepEqual(tok.config.codebook, { origin: "imported" });
    assert.match(tok.hash, /^[0-9a-f]{16}$/);
    // Every tensor but the training-only codebook_used, in the file's order.
    const keys = (spec.state_dict as { key: string }[]).map((t) => t.key)
      .filter((k) => k !== "quantize.codebook_used");
    assert.deepEqual(Object.keys(tok.tensors), keys);
    // The transformer embeds the l2-normalised rows; the stored codebook stays as imported.
    const book = tok.codebook;
    assert.equal(book.length, 512 * 8);
    for (let k = 0; k < 512; k++) {
      let n = 0;
      for (let d = 0; d < 8; d++) n += book[k * 8 + d] ** 2;
      assert.ok(Math.abs(Math.sqrt(n) - 1) < 1e-6, `row ${k} norm ${Math.sqrt(n)}`);
    }
    const raw = tok.tensors[CODEBOOK_KEY].data;
    assert.ok(
      raw.some((v, i) => Math.abs(v - book[i]) > 1e-3),
      "the stored codebook is the raw one",
    );
  },
);

fixtureTest(
  "save then load: the same tensors and hash; loadTokenizer finds the vq kind",
  async () => {
    const tok = await fixtureTokenizer();
    await using tmp = await tempDir();
    await tok.save(tmp.path);
    const back = await VqTokenizer.load(tmp.path);
    assert.equal(back.hash, tok.hash);
    assert.deepEqual(back.config, tok.config);
    for (const [key, t] of Object.entries(tok.tensors)) {
      assert.deepEqual(back.tensors[key].shape, t.shape, key);
      assert.deepEqual(back.tensors[key].data, t.data, key);
    }
    const any = await loadTokenizer(join(tmp.path, "tokenizer.json"));
    assert.ok(any instanceof VqTokenizer);
    assert.equal(any.hash, tok.hash);
    assert.equal(any.dir, tmp.path);
  },
);

/** Asserts that loading `dir` fails with one UserError whose message matches `pattern`. */
async function refusedLoad(dir: string, pattern: RegExp) {
  await assert.rejects(
    () => VqTokenizer.load(dir),
    (e: unknown) => e instanceof UserError && pattern.test(e.message) && !e.message.includes("\n"),
  );
}

fixtureTest(
  "a damaged tokenizer.safetensors or tokenizer.json is refused naming the file",
  async () => {
    const tok = await fixtureTokenizer();
    await using tmp = await tempDir();
    await tok.save(tmp.path);
    const weights = join(tmp.path, "tokenizer.safetensors"),
      json = join(tmp.path, "tokenizer.json");
    const goodWeights = await Deno.readFile(weights), goodJson = await Deno.readTextFile(json);

    // One weight changed: the hash no longer matches.
    const flipped = goodWeights.slice();
    flipped[flipped.length - 5] ^= 0x01;
    await Deno.writeFile(weights, flipped);
    await refusedLoad(
      tmp.path,
      /tokenizer\.safetensors: the tensors hash to .*tokenizer\.json says/,
    );
    // A NaN weight.
    const nan = goodWeights.slice();
    new DataView(nan.buffer).setFloat32(nan.length - 4, NaN, true);
    await Deno.writeFile(weights, nan);
    await refusedLoad(
      tmp.path,
      /tokenizer\.safetensors: tensor 'post_quant_conv\.bias' holds 1 non-finite/,
    );
    // A truncated file.
    await Deno.writeFile(weights, goodWeights.subarray(0, goodWeights.length - 100));
    await refusedLoad(tmp.path, /tokenizer\.safetensors/);
    await Deno.writeFile(weights, goodWeights);

    const edit = async (change: (config: any) => void, pattern: RegExp) => {
      const config = JSON.parse(goodJson);
      change(config);
      await Deno.writeTextFile(json, JSON.stringify(config));
      await refusedLoad(tmp.path, pattern);
    };
    await edit(
      (c) => c.codes = 4096,
      /tokenizer\.json: 'codes' must equal 'architecture\.codes' \(512\)/,
    );
    await edit((c) => c.architecture.ch = 48, /tokenizer\.json: 'architecture' is impossible/);
    await edit(
      (c) => c.architecture.zChannels = 32,
      /tokenizer\.safetensors: tensor 'encoder\.conv_out\.weight' has shape \[64, 128, 3, 3\]/,
    );
    await edit((c) => c.hash = "0000000000000000", /tokenizer\.json says '0000000000000000'/);
    await edit((c) => delete c.source, /tokenizer\.json: 'source' is missing/);
    await edit((c) => c.codebook.origin = "magic", /tokenizer\.json: 'codebook\.origin' must be/);
    await edit((c) => c.patch = 8, /tokenizer\.json: 'patch' must be 16/);
    await Deno.writeTextFile(json, "{ not json");
    await refusedLoad(tmp.path, /tokenizer\.json/);
    await Deno.writeTextFile(json, goodJson);
    assert.equal((await VqTokenizer.load(tmp.path)).hash, tok.hash, "the good files load again");
  },
);

Deno.test("the architecture of the real ds16 key list, and a wrong shape named by its key", async () => {
  const keysFile = join(VQ_FIXTURE, "vq_ds16_keys.json");
  if (!await Deno.stat(keysFile).then(() => true, () => false)) return; // CI: no ../shared
  const ds16 = JSON.parse(await Deno.readTextFile(keysFile));
  const shapes: Record<string, number[]> = Object.fromEntries(
    (ds16.state_dict as { key: string; shape: number[] }[]).map((t) => [t.key, t.shape]),
  );
  const arch = deriveArchitecture(shapes, "ds16.pt");
  assert.deepEqual(arch, {
    ch: 128,
    chMult: [1, 1, 2, 2, 4],
    zChannels: 256,
    codes: 16384,
    codeDim: 8,
    encoderBlocks: 2,
    decoderBlocks: 3,
  });
  assert.equal(vqTensorShapes(arch).length, ds16.state_dict.length - 1, "all but codebook_used");
  const bad = { ...shapes, "decoder.mid.1.q.weight": [512, 512, 3, 3] };
  assert.throws(
    () => deriveArchitecture(bad, "ds16.pt"),
    /^UserError: ds16\.pt: tensor 'decoder\.mid\.1\.q\.weight' has shape \[512, 512, 3, 3\], .* needs \[512, 512, 1, 1\]$/,
  );
  const extra = { ...shapes, "encoder.extra.weight": [3] };
  assert.throws(
    () => deriveArchitecture(extra, "ds16.pt"),
    /unexpected tensor 'encoder\.extra\.weight'/,
  );
  const { ["encoder.conv_in.weight"]: _, ...missing } = shapes;
  assert.throws(
    () => deriveArchitecture(missing, "ds16.pt"),
    /^UserError: ds16\.pt: not a LlamaGen VQ checkpoint \(no tensor 'encoder\.conv_in\.weight'\)$/,
  );
});

Deno.test("a checkpoint's state dict is found under ema, model or state_dict, or at the top", () => {
  const storage = { "0": floatStorage([1, 2, 3, 4]) };
  for (const outer of ["ema", "model", "state_dict", null]) {
    const pickle = stateDictPickle(outer, "w", tensorOps("0", 4, [2, 2], [2, 1]));
    const t = decodeTorchCheckpoint(torchZip(pickle, storage), "m.pt");
    assert.deepEqual(Object.keys(t), ["w"], String(outer));
    assert.deepEqual([...t.w.data], [1, 2, 3, 4]);
  }
});

Deno.test("a checkpoint without VQ tensors is refused as not a LlamaGen VQ checkpoint", async () => {
  await using tmp = await tempDir();
  const file = join(tmp.path, "other.pt");
  const pickle = stateDictPickle("model", "fc.weight", tensorOps("0", 4, [2, 2], [2, 1]));
  await Deno.writeFile(file, torchZip(pickle, { "0": floatStorage([1, 2, 3, 4]) }));
  await assert.rejects(
    () => VqTokenizer.importLlamagen(file),
    (e: unknown) =>
      e instanceof UserError &&
      e.message === `${file}: not a LlamaGen VQ checkpoint (no tensor 'encoder.conv_in.weight')`,
  );
});

Deno.test("pixels to the encoder's input and the decoder's output to pixels", () => {
  // (1, 2, 2, 3) HWC -> (1, 3, 2, 2) NCHW, u8 / 127.5 - 1 rounded once to float32.
  const rgb = Uint8Array.from([0, 255, 128, 1, 2, 3, 10, 20, 30, 254, 253, 252]);
  const x = imagesToInput(rgb, 1, 2, 2);
  assert.deepEqual(
    [...x],
    [0, 1, 10, 254, 255, 2, 20, 253, 128, 3, 30, 252].map((v) => Math.fround(v / 127.5 - 1)),
  );
  // Area resize to 1 px: the mean of each channel.
  const mean = imagesToInput(rgb, 1, 2, 1);
  assert.deepEqual([...mean].map((v) => Number(((v + 1) * 127.5).toFixed(3))), [
    66.25,
    132.5,
    103.25,
  ]);
  // save_image's rounding: clamp((y + 1) / 2, 0, 1) * 255 + 0.5, truncated; channels to HWC.
  const y = Float32Array.from([-2, -1, 0, 1, 5, 0.5, -0.999, 0.2, 0, 0, 0, 0]); // (1, 3, 2, 2)
  assert.deepEqual([...outputToPixels(y, 1, 2)], [
    0,
    255,
    128,
    0,
    191,
    128,
    128,
    0,
    128,
    255,
    153,
    128,
  ]);
});

Deno.test("spherical k-means: unit centroids, and the error falls to the clusters' spread", async () => {
  const D = 8, K = 16, perCluster = 200, n = K * perCluster;
  const rng = new Rng(7);
  // 16 well separated directions (+-e_d, at least sqrt(2) apart), each with noise 0.1 per axis.
  const centres = new Float32Array(K * D);
  for (let c = 0; c < K; c++) centres[c * D + (c >> 1)] = c % 2 ? -1 : 1;
  const unit = new Float32Array(n * D);
  const noise = randomNormals(n * D, rng, 0.1);
  for (let i = 0; i < n; i++) {
    const c = i % K;
    let norm = 0;
    for (let d = 0; d < D; d++) {
      norm += (unit[i * D + d] = centres[c * D + d] + noise[i * D + d]) ** 2;
    }
    for (let d = 0; d < D; d++) unit[i * D + d] /= Math.sqrt(norm);
  }
  const set = { unit, n, bucket: new Uint8Array(n), sides: [16] };
  const opts = { seed: 1, device: "cpu" as const, quiet: true };
  const error = async (book: Float32Array) => {
    const { nearestCodes } = await import("../src/engine.ts");
    const { dist2 } = await nearestCodes("cpu", unit, n, D, book, K);
    return dist2.reduce((a, b) => a + Math.max(0, b), 0) / n;
  };
  const seeded = await sphericalKMeans(set, D, K, { ...opts, iterations: 0 });
  const fitted = await sphericalKMeans(set, D, K, { ...opts, iterations: 10 });
  for (let k = 0; k < K; k++) {
    let norm = 0;
    for (let d = 0; d < D; d++) norm += fitted[k * D + d] ** 2;
    assert.ok(Math.abs(norm - 1) < 1e-5, `centroid ${k} has norm ${Math.sqrt(norm)}`);
  }
  const [e0, e1] = [await error(seeded), await error(fitted)];
  // The true cluster directions give the error of the noise alone.
  const truth = await error(centres);
  assert.ok(e1 <= e0, `error after ${e1} <= seeding ${e0}`);
  assert.ok(e1 < 1.2 * truth, `error ${e1} near the noise's ${truth}`);
  assert.deepEqual(await sphericalKMeans(set, D, K, { ...opts, iterations: 10 }), fitted, "seeded");
});

// --- On the engine (VqNet): encoding, decoding, retraining --------------------------------------

fixtureTest(
  "encodeImages: the fixture's codes at 64 px, (n, L) for every scale, deterministic",
  async () => {
    const tok = await fixtureTokenizer();
    const images = await refArray("images_uint8"); // (2, 64, 64, 3)
    const indices = await refArray("indices"); // (2, 4, 4)
    const pixels = Uint8Array.from(images.values);
    const codes = await tok.encodeImages(pixels, 2, 64, [4], "cpu");
    assert.deepEqual([...codes], indices.values, "the fixture's nearest codes");
    const scales = [1, 2, 3, 4];
    const L = 1 + 4 + 9 + 16;
    const all = await tok.encodeImages(pixels, 2, 64, scales, "cpu");
    assert.equal(all.length, 2 * L);
    for (let b = 0; b < 2; b++) {
      assert.deepEqual(
        [...all.subarray(b * L + L - 16, (b + 1) * L)],
        indices.values.slice(b * 16, (b + 1) * 16),
      );
    }
    assert.ok(all.every((c) => c < 512));
    assert.deepEqual(await tok.encodeImages(pixels, 2, 64, scales, "cpu"), all, "deterministic");
    // Each scale is encoded from the image resized to s * 16 px, the same image alone or batched.
    const one = await tok.encodeImages(pixels.subarray(64 * 64 * 3), 1, 64, scales, "cpu");
    assert.deepEqual(one, all.subarray(L));
    // Callers sharing the tokenizer at once are served one after another (VqNet takes one call).
    const [x, y] = await Promise.all([
      tok.encodeImages(pixels, 2, 64, scales, "cpu"),
      tok.decodeGrids(indices.values, 2, 4, "cpu"),
    ]);
    assert.deepEqual(x, all);
    assert.equal(y.length, 2 * 64 * 64 * 3);
    await assert.rejects(() => tok.encodeImages(pixels, 2, 64, [1, 2], "cpu"), /scales end at 2/);
  },
);

fixtureTest("decodeGrids: (n, 16s, 16s, 3) images, the fixture's decode_code output", async () => {
  const tok = await fixtureTokenizer();
  const grid = Array.from({ length: 16 }, (_, i) => (i * 97 + 5) % 512); // decode_codes_in
  const images = await tok.decodeGrids(grid, 1, 4, "cpu");
  assert.equal(images.length, 64 * 64 * 3);
  const ref = await refArray("decode_codes_out"); // (1, 3, 64, 64), unclamped
  const want = outputToPixels(Float32Array.from(ref.values), 1, 64);
  let off = 0;
  for (let i = 0; i < want.length; i++) off = Math.max(off, Math.abs(want[i] - images[i]));
  assert.ok(off <= 1, `pixels within 1 of the reference (rounding near .5), got ${off}`);
  const two = await tok.decodeGrids([...grid.slice(0, 4), ...grid.slice(4, 8)], 2, 2, "cpu");
  assert.equal(two.length, 2 * 32 * 32 * 3);
  await assert.rejects(() => tok.decodeGrids([512], 1, 1, "cpu"), /code 512 .* 512 codes/);
});

fixtureTest(
  "retrain: a new codebook on images of random sides, error at or below the import's",
  async () => {
    const tok = await fixtureTokenizer();
    await using tmp = await tempDir();
    await writeMixedImages(join(tmp.path, "images"), 60, 3);
    const images = await openSizedImages(`folder:${join(tmp.path, "images")}`);
    const opts = {
      codes: 64,
      minSide: 16,
      maxSide: 96,
      images: 40,
      iterations: 8,
      seed: 5,
      maxLatents: 400,
      device: "cpu" as const,
      quiet: true,
    };
    const { tokenizer, report } = await retrainCodebook(tok, images, opts);
    assert.equal(report.latents, 400, "capped at --max-latents");
    assert.equal(report.images, 40);
    assert.ok(report.latentErrorAfter <= report.latentErrorBefore, JSON.stringify(report));
    assert.deepEqual(
      report.perSide.map((x) => x.side).filter((s) => s % 16 || s < 16 || s > 96),
      [],
    );
    assert.equal(report.perSide.reduce((a, x) => a + x.latents, 0), 400);
    // Held out: validation images in proportion 1:9, never fitted. 64 codes on 400 latents need
    // not beat 512 random codes there (they do not here); the figures are squared distances.
    assert.ok(report.heldOut && report.heldOut.images === 4 && report.heldOut.latents <= 44);
    for (const e of [report.heldOut.before, report.heldOut.after]) assert.ok(e > 0 && e < 4);
    assert.equal(tokenizer.codes, 64);
    assert.notEqual(tokenizer.hash, tok.hash);
    assert.deepEqual(
      tokenizer.tensors["decoder.conv_out.weight"],
      tok.tensors["decoder.conv_out.weight"],
    );
    await tokenizer.save(join(tmp.path, "tok"));
    const back = await VqTokenizer.load(join(tmp.path, "tok"));
    assert.equal(back.hash, tokenizer.hash);
    assert.deepEqual(back.config.codebook, report);
    const again = await retrainCodebook(tok, images, opts);
    assert.equal(again.tokenizer.hash, tokenizer.hash, "deterministic for a seed");
    await assert.rejects(
      () => retrainCodebook(tok, images, { ...opts, codes: 1000 }),
      /only 400 latents to fit 1000 codes/,
    );
  },
);
