/** Dataset sources and the train/validation split. */
import assert from "node:assert/strict";
import { imageAt, loadDataset, splitIndices } from "../src/data/dataset.ts";
import { UsageError, UserError } from "../src/errors.ts";
import { tempDir } from "./helpers.ts";
import { writeShapesFolder } from "./fixtures.ts";

Deno.test("mnist: 10,000 digits padded to 32x32, grey as RGB, 10 classes", async () => {
  const set = await loadDataset("mnist");
  assert.equal(set.count, 10000);
  assert.equal(set.side, 32);
  assert.deepEqual(set.classes, ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]);
  const counts = new Array(10).fill(0);
  for (const l of set.labels) counts[l]++;
  assert.ok(counts.every((c) => c > 800 && c < 1200), `class counts ${counts}`);
  const img = imageAt(set, 123);
  // The 2-pixel border is black padding; the digit has bright strokes; R = G = B.
  for (let x = 0; x < 32; x++) assert.equal(img[x * 3], 0);
  assert.ok(Math.max(...img) > 200);
  for (let i = 0; i < img.length; i += 3) assert.ok(img[i] === img[i + 1] && img[i] === img[i + 2]);
});

Deno.test("emoji: categories as classes, Component skipped, 64x64 RGB over white", async () => {
  const set = await loadDataset("emoji");
  assert.ok(set.count > 1500);
  assert.equal(set.side, 64);
  assert.ok(!set.classes.includes("Component"));
  assert.equal(set.classes[0], "Smileys & Emotion");
  // Corners of an emoji are transparent in the source, so white after flattening.
  assert.deepEqual(Array.from(imageAt(set, 0).subarray(0, 3)), [255, 255, 255]);
});

Deno.test("the split is deterministic, disjoint, complete, and 10% validation", () => {
  const train = splitIndices(1234, "train"), val = splitIndices(1234, "val");
  assert.equal(val.length, 124);
  assert.equal(train.length + val.length, 1234);
  const all = new Set([...train, ...val]);
  assert.equal(all.size, 1234);
  assert.deepEqual(splitIndices(1234, "val"), val);
});

Deno.test("folder: classes from sorted subfolders, images centre-cropped to the side", async () => {
  await using dir = await tempDir();
  await writeShapesFolder(dir.path, 3, 16);
  await Deno.writeTextFile(`${dir.path}/bars/notes.txt`, "not an image, ignored");
  const set = await loadDataset(`folder:${dir.path}`, { side: 8 });
  assert.deepEqual(set.classes, ["bars", "blocks"]);
  assert.equal(set.count, 6);
  assert.equal(set.side, 8);
  assert.deepEqual(Array.from(set.labels), [0, 0, 0, 1, 1, 1]);
});

Deno.test("folder: a corrupt PNG is a UserError naming the file", async () => {
  await using dir = await tempDir();
  await writeShapesFolder(dir.path, 2, 16);
  await Deno.writeFile(
    `${dir.path}/blocks/broken.png`,
    new Uint8Array([0x89, 0x50, 0x4e, 0x47, 1, 2, 3]),
  );
  await assert.rejects(() => loadDataset(`folder:${dir.path}`, { side: 16 }), (err: Error) => {
    assert.ok(err instanceof UserError);
    assert.match(err.message, /broken\.png: cannot decode image/);
    return true;
  });
});

Deno.test("unknown datasets and missing folders are clear errors", async () => {
  await assert.rejects(() => loadDataset("cifar"), UsageError);
  await assert.rejects(
    () => loadDataset("folder:/nonexistent/x"),
    /\/nonexistent\/x: dataset folder not found/,
  );
});

Deno.test("folder: a dangling symbolic link is an error naming it; a good link is an image", async () => {
  await using dir = await tempDir();
  await writeShapesFolder(dir.path, 2, 16);
  await Deno.symlink(`${dir.path}/bars/000.png`, `${dir.path}/blocks/linked.png`);
  const set = await loadDataset(`folder:${dir.path}`, { side: 8 });
  assert.equal(set.count, 5);
  await Deno.symlink(`${dir.path}/nowhere.png`, `${dir.path}/bars/gone.png`);
  await assert.rejects(() => loadDataset(`folder:${dir.path}`, { side: 8 }), (err: Error) => {
    assert.ok(err instanceof UserError, err.stack);
    assert.match(
      err.message,
      /bars\/gone\.png: a symbolic link to a missing file \(dangling link\)/,
    );
    return true;
  });
  await Deno.remove(`${dir.path}/bars/gone.png`);
  await Deno.symlink(`${dir.path}/no-class`, `${dir.path}/zebras`);
  await assert.rejects(
    () => loadDataset(`folder:${dir.path}`, { side: 8 }),
    /zebras: a symbolic link to a missing file/,
  );
});

Deno.test("folder: an empty class folder is refused (skipping it would shift the labels)", async () => {
  await using dir = await tempDir();
  await writeShapesFolder(dir.path, 2, 16);
  await Deno.mkdir(`${dir.path}/apples`);
  await Deno.writeTextFile(`${dir.path}/apples/readme.txt`, "no images here");
  await assert.rejects(() => loadDataset(`folder:${dir.path}`, { side: 8 }), (err: Error) => {
    assert.ok(err instanceof UserError, err.stack);
    assert.match(err.message, /apples: class folder holds no \.png or \.jpg images/);
    return true;
  });
});
