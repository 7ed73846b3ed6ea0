/** The patch-VQ tokenizer: resizing, patches, k-means, encode/decode, files. */
import assert from "node:assert/strict";
import { resizeArea } from "../src/tokenizer/resize.ts";
import { extractPatches, pastePatches } from "../src/tokenizer/patches.ts";
import { kmeans } from "../src/tokenizer/kmeans.ts";
import { fitTokenizer, PatchTokenizer } from "../src/tokenizer/patch_vq.ts";
import { writeSafetensors } from "../src/util/safetensors.ts";
import type { ImageSet } from "../src/data/dataset.ts";
import { UserError } from "../src/errors.ts";
import { tempDir } from "./helpers.ts";

Deno.test("area resize averages the covered pixels, also for non-integer ratios", () => {
  // 4x4 image: left half 0, right half 255 (all channels).
  const img = new Uint8Array(4 * 4 * 3);
  for (let y = 0; y < 4; y++) {
    for (let x = 2; x < 4; x++) img.fill(255, (y * 4 + x) * 3, (y * 4 + x) * 3 + 3);
  }
  const two = resizeArea(img, 4, 2);
  assert.deepEqual(Array.from(two.filter((_, i) => i % 3 === 0)), [0, 1, 0, 1]);
  const one = resizeArea(img, 4, 1);
  assert.ok(Math.abs(one[0] - 0.5) < 1e-6);
  // 4 -> 3: the middle output column covers equal parts of source columns 1 (dark) and 2 (bright).
  const three = resizeArea(img, 4, 3);
  assert.ok(Math.abs(three[0] - 0) < 1e-6);
  assert.ok(Math.abs(three[3] - 0.5) < 1e-6);
  assert.ok(Math.abs(three[6] - 1) < 1e-6);
});

Deno.test("patches of the full-size scale paste back to the image exactly", () => {
  const side = 8, p = 4, s = 2;
  const img = Uint8Array.from({ length: side * side * 3 }, (_, i) => (i * 29) % 256);
  const patches = extractPatches(img, side, s, p); // (4, 48)
  // Use each patch as its own code vector.
  const back = pastePatches([0, 1, 2, 3], patches, s, p);
  assert.deepEqual(back, img);
});

Deno.test("k-means recovers well separated clusters", async () => {
  const centres = [[0, 0], [10, 0], [0, 10], [10, 10]];
  const n = 400, d = 2;
  const points = new Float32Array(n * d);
  for (let i = 0; i < n; i++) {
    const c = centres[i % 4];
    points[i * 2] = c[0] + Math.sin(i * 12.9898) * 0.5;
    points[i * 2 + 1] = c[1] + Math.cos(i * 78.233) * 0.5;
  }
  const { centroids, inertia } = await kmeans(points, n, d, {
    k: 4,
    iterations: 10,
    seed: 1,
    device: "cpu",
    quiet: true,
  });
  // `+ 0` turns a rounded -0 into 0 for the strict comparison.
  const found = Array.from(
    { length: 4 },
    (_, c) => [Math.round(centroids[c * 2]) + 0, Math.round(centroids[c * 2 + 1]) + 0],
  );
  found.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  assert.deepEqual(found, [[0, 0], [0, 10], [10, 0], [10, 10]]);
  assert.ok(inertia[inertia.length - 1] < 0.5);
  for (let i = 1; i < inertia.length; i++) {
    assert.ok(inertia[i] <= inertia[i - 1] + 1e-9, "Lloyd never increases the error");
  }
});

function stripes(count: number, side: number): ImageSet {
  const pixels = new Uint8Array(count * side * side * 3);
  for (let n = 0; n < count; n++) {
    for (let y = 0; y < side; y++) {
      for (let x = 0; x < side; x++) {
        const v = (x + n) % 4 < 2 ? 255 : 0;
        pixels.fill(v, ((n * side + y) * side + x) * 3, ((n * side + y) * side + x) * 3 + 3);
      }
    }
  }
  return { name: "stripes", classes: ["a"], side, count, pixels, labels: new Int32Array(count) };
}

Deno.test("a fitted tokenizer encodes every scale and reconstructs simple images exactly", async () => {
  const set = stripes(8, 8);
  const tok = await fitTokenizer(set, {
    patch: 4,
    codes: 8,
    scales: [1, 2],
    iterations: 5,
    seed: 0,
    maxPatches: 1000,
    device: "cpu",
    indices: Int32Array.from({ length: 8 }, (_, i) => i),
    quiet: true,
  });
  const codes = await tok.encode(set, Int32Array.from([0, 1, 2, 3]), [1, 2], "cpu");
  assert.equal(codes.length, 4 * 5);
  for (let i = 0; i < 4; i++) {
    const recon = tok.decodeScale(codes.subarray(i * 5 + 1, i * 5 + 5), 2);
    const img = set.pixels.subarray(i * 192, (i + 1) * 192);
    const maxErr = Math.max(...recon.map((v, j) => Math.abs(v - img[j])));
    assert.ok(maxErr <= 1, `image ${i}: max error ${maxErr}`);
  }
  await using dir = await tempDir();
  await tok.save(dir.path);
  const again = await PatchTokenizer.load(dir.path);
  assert.deepEqual(again.codebook, tok.codebook);
  assert.equal(again.config.hash, tok.config.hash);
});

Deno.test("a codebook whose shape does not match tokenizer.json is refused", async () => {
  const set = stripes(4, 8);
  const tok = await fitTokenizer(set, {
    patch: 4,
    codes: 4,
    scales: [2],
    iterations: 1,
    seed: 0,
    maxPatches: 100,
    device: "cpu",
    indices: Int32Array.from([0, 1, 2, 3]),
    quiet: true,
  });
  await using dir = await tempDir();
  await tok.save(dir.path);
  await writeSafetensors(`${dir.path}/tokenizer.safetensors`, {
    codebook: { shape: [4, 12], data: new Float32Array(48) },
  });
  await assert.rejects(() => PatchTokenizer.load(dir.path), (err: Error) => {
    assert.ok(err instanceof UserError);
    assert.match(err.message, /tokenizer\.safetensors: codebook shape \[4,12\] does not match/);
    return true;
  });
});
