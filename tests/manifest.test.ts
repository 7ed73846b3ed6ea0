/** The shard manifest: how it names its tokenizer, and its validation field by field. */
import assert from "node:assert/strict";
import { readManifest } from "../src/data/shards.ts";
import { tokenizerForManifest } from "../src/data/manifest_tokenizer.ts";
import { runCli, tempDir } from "./helpers.ts";
import { writeShapesFolder } from "./fixtures.ts";
import { writeShardFolder, writeTokenizer } from "./shard_fixture.ts";

Deno.test("data names the tokenizer relative to the shard folder, so any working folder works", async () => {
  await using dir = await tempDir();
  await writeTokenizer(`${dir.path}/tok`);
  await writeShapesFolder(`${dir.path}/images`, 4, 16);
  await Deno.mkdir(`${dir.path}/sub`);
  // Relative paths, from a working folder other than the repository's (and other than the
  // test's own, which is where tokenizerForManifest runs below).
  const r = await runCli(
    ["data", "--dataset", "folder:images", "--tokenizer", "tok", "--out", "sub/shards"],
    { cwd: dir.path },
  );
  assert.equal(r.code, 0, r.stderr);
  const shards = `${dir.path}/sub/shards`;
  const manifest = await readManifest(shards);
  assert.equal(manifest.tokenizer.path, "../../tok");
  const tokenizer = await tokenizerForManifest(manifest, shards);
  assert.equal(tokenizer.config.hash, manifest.tokenizer.hash);
});

Deno.test("an absolute tokenizer.path is used as is; --tokenizer replaces it", async () => {
  await using dir = await tempDir();
  const { tok, shards, manifest } = await writeShardFolder(dir.path);
  assert.equal(manifest.tokenizer.path, "../tok");
  const absolute = { ...manifest, tokenizer: { ...manifest.tokenizer, path: tok } };
  assert.equal((await tokenizerForManifest(absolute, shards)).config.hash, manifest.tokenizer.hash);
  const missing = { ...manifest, tokenizer: { ...manifest.tokenizer, path: "nowhere" } };
  await assert.rejects(
    () => tokenizerForManifest(missing, shards),
    (err: Error) => {
      assert.match(
        err.message,
        /the tokenizer 'nowhere' named by .*shards\/manifest\.json is missing/,
      );
      assert.match(err.message, /shards\/nowhere\/tokenizer\.json/);
      assert.match(err.message, /--tokenizer DIR/);
      return true;
    },
  );
  assert.equal(
    (await tokenizerForManifest(missing, shards, tok)).config.hash,
    manifest.tokenizer.hash,
  );
  // Another tokenizer (another fit, another hash) is refused, naming both files.
  await writeTokenizer(`${dir.path}/other`, undefined, 7);
  await assert.rejects(
    () => tokenizerForManifest(manifest, shards, `${dir.path}/other`),
    /other\/tokenizer\.json has hash [0-9a-f]+ but .*shards\/manifest\.json was encoded with/,
  );
});
