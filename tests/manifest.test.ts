/** The shard manifest: how it names its tokenizer, and its validation field by field. */
import assert from "node:assert/strict";
import { readManifest } from "../src/data/shards.ts";
import { tokenizerForManifest } from "../src/data/manifest_tokenizer.ts";
import { UserError } from "../src/errors.ts";
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
  assert.equal(tokenizer.hash, manifest.tokenizer.hash);
});

Deno.test("an absolute tokenizer.path is used as is; --tokenizer replaces it", async () => {
  await using dir = await tempDir();
  const { tok, shards, manifest } = await writeShardFolder(dir.path);
  assert.equal(manifest.tokenizer.path, "../tok");
  const absolute = { ...manifest, tokenizer: { ...manifest.tokenizer, path: tok } };
  assert.equal((await tokenizerForManifest(absolute, shards)).hash, manifest.tokenizer.hash);
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
    (await tokenizerForManifest(missing, shards, tok)).hash,
    manifest.tokenizer.hash,
  );
  // Another tokenizer (another fit, another hash) is refused, naming both files.
  await writeTokenizer(`${dir.path}/other`, undefined, 7);
  await assert.rejects(
    () => tokenizerForManifest(manifest, shards, `${dir.path}/other`),
    /other\/tokenizer\.json has hash [0-9a-f]+ but .*shards\/manifest\.json was encoded with/,
  );
});

/** Writes `edit(manifest)` over the fixture's manifest.json (raw text when a string). */
async function editManifest(shards: string, edit: (m: any) => unknown): Promise<void> {
  const m = JSON.parse(await Deno.readTextFile(`${shards}/manifest.json`));
  const out = edit(m);
  await Deno.writeTextFile(
    `${shards}/manifest.json`,
    typeof out === "string" ? out : JSON.stringify(out ?? m),
  );
}

function cleanMessage(err: unknown, label: string): string {
  assert.ok(err instanceof UserError, `${label}: ${(err as Error)?.stack ?? err}`);
  assert.doesNotMatch(err.message, /undefined|(?<!JSON )null|\[object Object\]/, label);
  assert.equal(err.message.split("\n").length, 1, label);
  return err.message;
}

Deno.test("every manifest field is checked, with a message naming the file and the field", async () => {
  await using dir = await tempDir();
  const { shards } = await writeShardFolder(dir.path);
  const original = await Deno.readTextFile(`${shards}/manifest.json`);
  const cases: [(m: any) => unknown, RegExp][] = [
    [() => "null", /manifest\.json: a shard manifest must be a JSON object, got an empty JSON value/],
    [() => "[]", /must be a JSON object, got a list of 0/],
    [() => '{"format": 1, "format": 2}', /not valid JSON \(duplicate key 'format' at line 1/],
    [(m) => void (m.format = "x"), /'format' must be 'checkerboard-shards'.*got the text 'x'/],
    [(m) => void (m.version = 2), /'version' must be 1 .*got 2/],
    [(m) => void (m.version = "1"), /'version' must be an integer, got the text '1'/],
    [(m) => void delete m.dataset, /'dataset' is missing/],
    [(m) => void (m.imageSide = 0), /'imageSide' must be at least 1, got 0/],
    [(m) => void (m.imageSide = 1.5), /'imageSide' must be an integer, got 1.5/],
    [
      (m) => void (m.imageSide = 20),
      /'scales' must end at the final grid side imageSide \/ patch = 5/,
    ],
    [(m) => void (m.imageSide = 18), /'imageSide' must be a multiple of 'patch' \(4\), got 18/],
    [(m) => void delete m.tokenizer.path, /'tokenizer\.path' is missing/],
    [(m) => void (m.tokenizer.path = 3), /'tokenizer\.path' must be a text, got 3/],
    [(m) => void (m.tokenizer = "tok"), /'tokenizer' must be an object, got the text 'tok'/],
    [(m) => void (m.tokenizer.hash = ""), /'tokenizer\.hash' must not be empty/],
    [(m) => void (m.patch = 2), /'patch' must equal 'tokenizer\.patch' \(4\), got 2/],
    [(m) => void (m.codes = 1), /'codes' must be at least 2, got 1/],
    [(m) => void (m.codes = 70000), /'codes' must be at most 65536, got 70000/],
    [(m) => void (m.codes = 32), /'codes' must equal 'tokenizer\.codes' \(16\), got 32/],
    [(m) => void (m.ratio = 3), /'ratio' must be a text, got 3/],
    [
      (m) => void (m.ratio = "3"),
      /'ratio' '3' gives the scales \[1,4\], but 'scales' is \[1,2,4\]/,
    ],
    [(m) => void (m.ratio = "fast"), /'ratio' must be 'explicit' or a ratio .*got the text 'fast'/],
    [(m) => void delete m.scales, /'scales' is missing/],
    [(m) => void (m.scales = "1,2,4"), /'scales' must be a list, got the text '1,2,4'/],
    [(m) => void (m.scales = []), /'scales' must have at least 1 entry/],
    [
      (m) => void (m.scales = [1, 2, 2, 4]),
      /'scales\[2\]' must be greater than the scale before it/,
    ],
    [(m) => void (m.scales = [0, 4]), /'scales\[0\]' must be at least 1, got 0/],
    [
      (m) => void (m.scales = [1, 2]),
      /'scales' must end at the final grid side .* = 4, got \[1,2\]/,
    ],
    [
      (m) => void (m.sequenceLength = 20),
      /'sequenceLength' must be the sum of the squared scales \(21\)/,
    ],
    [(m) => void delete m.classes, /'classes' is missing/],
    [(m) => void (m.classes = "bars"), /'classes' must be a list, got the text 'bars'/],
    [(m) => void (m.classes = []), /'classes' must have at least 1 entry/],
    [(m) => void (m.classes = ["a", ""]), /'classes\[1\]' must not be empty/],
    [(m) => void (m.classes = ["a", "a"]), /'classes' must be distinct, 'a' is listed twice/],
    [(m) => void (m.classes = ["a", 2]), /'classes\[1\]' must be a text, got 2/],
    [(m) => void delete m.counts, /'counts' is missing/],
    [(m) => void (m.counts = "x"), /'counts' must be an object, got the text 'x'/],
    [(m) => void (m.counts.train = "x"), /'counts\.train' must be an integer, got the text 'x'/],
    [
      (m) => void (m.counts.val = 99),
      /'counts\.val' must equal the sum of the 'val' shard counts \(3\), got 99/,
    ],
    [(m) => void (m.shards = []), /'shards' must have at least 1 entry/],
    [(m) => void (m.shards = {}), /'shards' must be a list, got an object/],
    [
      (m) => void (m.shards = m.shards.filter((s: any) => s.split === "train")),
      /must list at least one 'val' shard/,
    ],
    [
      (m) => void (m.shards = m.shards.filter((s: any) => s.split === "val")),
      /must list at least one 'train' shard/,
    ],
    [(m) => void (m.shards[0] = null), /'shards\[0\]' must be a JSON object, got an empty JSON value/],
    [
      (m) => void (m.shards[0].file = "../x.npz"),
      /'shards\[0\]\.file' must be a file name in the shard folder/,
    ],
    [(m) => void (m.shards[0].file = "/etc/passwd"), /'shards\[0\]\.file' must be a file name/],
    [
      (m) => void (m.shards[1].file = m.shards[0].file),
      /'shards\[1\]\.file' names a shard listed before/,
    ],
    [
      (m) => void (m.shards[0].split = "test"),
      /'shards\[0\]\.split' must be one of 'train', 'val', got the text 'test'/,
    ],
    [(m) => void (m.shards[0].count = 0), /'shards\[0\]\.count' must be at least 1, got 0/],
    [(m) => void (m.layout = 5), /'layout' must be a text, got 5/],
  ];
  for (const [edit, pattern] of cases) {
    await Deno.writeTextFile(`${shards}/manifest.json`, original);
    await editManifest(shards, edit);
    await assert.rejects(() => readManifest(shards), (err) => {
      const message = cleanMessage(err, String(pattern));
      assert.match(message, /shards\/manifest\.json: /, String(pattern));
      assert.match(message, pattern);
      return true;
    }, String(pattern));
  }
  // "explicit" accepts any valid scale list; the unedited manifest reads.
  await Deno.writeTextFile(`${shards}/manifest.json`, original);
  await editManifest(shards, (m) => void (m.ratio = "explicit"));
  assert.deepEqual((await readManifest(shards)).scales, [1, 2, 4]);
});

Deno.test("train on a manifest without shards or with bad counts stops at once with one line", async () => {
  await using dir = await tempDir();
  const { shards } = await writeShardFolder(dir.path);
  const original = await Deno.readTextFile(`${shards}/manifest.json`);
  for (
    const [edit, pattern] of [
      [(m: any) => void (m.shards = []), /'shards' must have at least 1 entry/],
      [(m: any) => void (m.counts = "x"), /'counts' must be an object, got the text 'x'/],
    ] as const
  ) {
    await Deno.writeTextFile(`${shards}/manifest.json`, original);
    await editManifest(shards, edit);
    const r = await runCli(["train", "--data", shards, "--out", `${dir.path}/run`, "--iters", "2"]);
    assert.equal(r.code, 1, r.stderr);
    const lines = r.stderr.trim().split("\n").filter((l) => !l.startsWith("checkerboard: notice:"));
    assert.equal(lines.length, 1, r.stderr);
    assert.match(lines[0], pattern);
  }
});
