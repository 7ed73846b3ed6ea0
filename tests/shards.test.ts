/** Shards against their manifest: dtypes, shapes, label and code ranges, and classes with images. */
import assert from "node:assert/strict";
import { encodeNpz } from "../src/data/npy.ts";
import { readManifest, readShard, validateShards } from "../src/data/shards.ts";
import { UserError } from "../src/errors.ts";
import { tempDir } from "./helpers.ts";
import { writeShardFolder } from "./shard_fixture.ts";

async function expectError(run: () => Promise<unknown>, pattern: RegExp) {
  await assert.rejects(run, (err) => {
    assert.ok(err instanceof UserError, `${pattern}: ${(err as Error)?.stack ?? err}`);
    assert.match(err.message, pattern);
    assert.doesNotMatch(err.message, /undefined|(?<!JSON )null|\[object Object\]/);
    return true;
  }, String(pattern));
}

Deno.test("readShard refuses labels outside the classes (the null class too) and codes >= K", async () => {
  await using dir = await tempDir();
  const { shards, manifest } = await writeShardFolder(dir.path);
  const entry = manifest.shards[0]; // train-00000.npz, 5 rows of L = 21
  const path = `${shards}/${entry.file}`;
  const write = (codes: Uint16Array, labels: Int32Array, shape = [5, 21]) =>
    Deno.writeFile(
      path,
      encodeNpz({
        codes: { shape, data: codes },
        labels: { shape: [labels.length], data: labels },
      }),
    );
  const codes = new Uint16Array(5 * 21).fill(3);
  await write(codes, Int32Array.from([0, 1, 2, 0, 1])); // 2 = classes.length: the null class
  await expectError(
    () => readShard(shards, manifest, entry),
    /train-00000\.npz: row 2 has label 2, but the manifest lists 2 classes \(labels 0 to 1\)/,
  );
  await write(codes, Int32Array.from([0, 1, 0, -1, 1]));
  await expectError(() => readShard(shards, manifest, entry), /row 3 has label -1/);
  const big = codes.slice();
  big[2 * 21 + 5] = 16;
  await write(big, Int32Array.from([0, 1, 0, 1, 1]));
  await expectError(
    () => readShard(shards, manifest, entry),
    /train-00000\.npz: row 2 holds code 16, but the codebook has 16 codes \(0 to 15\)/,
  );
  await write(new Uint16Array(5 * 20), Int32Array.from([0, 1, 0, 1, 1]), [5, 20]);
  await expectError(
    () => readShard(shards, manifest, entry),
    /codes \[5,20\] and labels \[5\] do not match the manifest \(\[5, 21\] and \[5\]\)/,
  );
  await write(codes, Int32Array.from([0, 1, 0, 1, 1]), [105]);
  await expectError(() => readShard(shards, manifest, entry), /codes \[105\] and labels/);
  await Deno.writeFile(
    path,
    encodeNpz({
      codes: { shape: [5, 21], data: new Int32Array(105) },
      labels: { shape: [5], data: new Int32Array(5) },
    }),
  );
  await expectError(() => readShard(shards, manifest, entry), /no uint16 array 'codes'/);
  await write(codes, Int32Array.from([0, 1, 0, 1, 1]));
  assert.equal((await readShard(shards, manifest, entry)).labels.length, 5);
});

Deno.test("validateShards reads every shard of both splits and finds classes without images", async () => {
  await using dir = await tempDir();
  const { shards, manifest } = await writeShardFolder(dir.path);
  assert.deepEqual(await validateShards(shards, manifest), [10, 11]);
  // A longer classes list: the new classes have no training images.
  const longer = { ...manifest, classes: [...manifest.classes, "cats", "dogs"] };
  await expectError(
    () => validateShards(shards, longer),
    /shards\/manifest\.json: class 'cats' \(index 2\) and 1 more have no training image/,
  );
  // A shorter one: labels out of range.
  const shorter = { ...manifest, classes: ["bars"] };
  await expectError(
    () => validateShards(shards, shorter),
    /has label 1, but the manifest lists 1 classes/,
  );
  // A damaged validation shard is found before training, not after it.
  const val = manifest.shards.find((s) => s.split === "val")!;
  const bytes = await Deno.readFile(`${shards}/${val.file}`);
  await Deno.writeFile(`${shards}/${val.file}`, bytes.subarray(0, bytes.length - 30));
  await expectError(() => validateShards(shards, manifest), /val-00000\.npz: not a readable \.npz/);
  assert.equal((await readManifest(shards)).shards.length, manifest.shards.length);
});
