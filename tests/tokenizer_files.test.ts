/** tokenizer.json and tokenizer.safetensors: every field, the codebook's shape, values and hash. */
import assert from "node:assert/strict";
import { PatchTokenizer, tokenizerHash } from "../src/tokenizer/patch_vq.ts";
import { readSafetensors, writeSafetensors } from "../src/util/safetensors.ts";
import { UserError } from "../src/errors.ts";
import { expectOneLineError, tempDir } from "./helpers.ts";
import { writeTokenizer } from "./shard_fixture.ts";

async function expectLoadError(dir: string, pattern: RegExp) {
  await assert.rejects(() => PatchTokenizer.load(dir), (err) => {
    assert.ok(err instanceof UserError, `${pattern}: ${(err as Error)?.stack ?? err}`);
    assert.match(err.message, pattern);
    assert.doesNotMatch(err.message, /undefined|(?<!JSON )null|\[object Object\]/);
    assert.equal(err.message.split("\n").length, 1);
    return true;
  }, String(pattern));
}

Deno.test("every tokenizer.json field is checked", async () => {
  await using dir = await tempDir();
  const tok = `${dir.path}/tok`;
  await writeTokenizer(tok);
  const original = await Deno.readTextFile(`${tok}/tokenizer.json`);
  const cases: [(c: any) => unknown, RegExp][] = [
    [() => "null", /tokenizer\.json: a tokenizer description must be a JSON object, got an empty JSON value/],
    [() => '{"patch": 4, "patch": 2}', /not valid JSON \(duplicate key 'patch'/],
    [(c) => void (c.format = "vq"), /'format' must be 'checkerboard-patch-vq'.*got the text 'vq'/],
    [(c) => void (c.version = 2), /'version' must be 1 .*got 2/],
    [(c) => void (c.channels = "x"), /'channels' must be the number 3 \(RGB\), got the text 'x'/],
    [(c) => void (c.channels = 1), /'channels' must be the number 3 \(RGB\), got 1/],
    [(c) => void delete c.channels, /'channels' must be the number 3 \(RGB\), got nothing/],
    [(c) => void (c.patch = 0), /'patch' must be at least 1, got 0/],
    [(c) => void (c.patch = "4"), /'patch' must be an integer, got the text '4'/],
    [(c) => void (c.patch = 3), /'imageSide' must be a multiple of 'patch' \(3\), got 16/],
    [(c) => void (c.codes = 1), /'codes' must be at least 2, got 1/],
    [(c) => void (c.codes = 1e9), /'codes' must be at most 65536/],
    [(c) => void (c.imageSide = 0), /'imageSide' must be at least 1, got 0/],
    [(c) => void (c.imageSide = 100000), /'imageSide' must be at most 16384/],
    [(c) => void (c.dataset = 7), /'dataset' must be a text, got 7/],
    [(c) => void (c.fitScales = null), /'fitScales' must be a list, got an empty JSON value/],
    [(c) => void (c.fitScales = [9]), /'fitScales\[0\]' must be at most 4, got 9/],
    [(c) => void delete c.hash, /'hash' is missing/],
    [(c) => void (c.fit = 1), /'fit' must be an object, got 1/],
    [(c) => void (c.fit.mse = ["a"]), /'fit\.mse\[0\]' must be a number, got the text 'a'/],
    [
      (c) => void (c.hash = "0123456789abcdef"),
      /the codebook hashes to [0-9a-f]{16}, but .*tokenizer\.json says '0123456789abcdef'/,
    ],
    [(c) => void (c.codes = 32), /codebook shape \[16,48\] does not match/],
  ];
  for (const [edit, pattern] of cases) {
    const c = JSON.parse(original);
    const out = edit(c);
    await Deno.writeTextFile(
      `${tok}/tokenizer.json`,
      typeof out === "string" ? out : JSON.stringify(c),
    );
    await expectLoadError(tok, pattern);
  }
  await Deno.writeTextFile(`${tok}/tokenizer.json`, original);
  assert.equal((await PatchTokenizer.load(tok)).config.codes, 16);
});

Deno.test("a codebook with NaN or Inf, another dtype, or another hash is refused", async () => {
  await using dir = await tempDir();
  const tok = `${dir.path}/tok`;
  const tokenizer = await writeTokenizer(tok);
  const path = `${tok}/tokenizer.safetensors`;
  const good = (await readSafetensors(path)).tensors.codebook.data as Float32Array;
  const nan = good.slice();
  nan[17] = NaN;
  nan[20] = Infinity;
  nan[40] = -Infinity;
  await writeSafetensors(path, { codebook: { shape: [16, 48], data: nan } });
  await expectLoadError(
    tok,
    /tokenizer\.safetensors: tensor 'codebook' holds 3 non-finite values \(NaN or Inf\), the first at index 17/,
  );
  await writeSafetensors(path, { codebook: { shape: [16, 48], data: new Int32Array(16 * 48) } });
  await expectLoadError(tok, /tokenizer\.safetensors: no float32 tensor 'codebook'/);
  const moved = good.slice();
  moved[0] += 0.25;
  await writeSafetensors(path, { codebook: { shape: [16, 48], data: moved } });
  await expectLoadError(tok, /the codebook hashes to [0-9a-f]{16}, but .* says '[0-9a-f]{16}'/);
  assert.equal(tokenizerHash(4, 16, good), tokenizer.config.hash);
  // The CLI gives one line and exit 1 for the NaN codebook too.
  await writeSafetensors(path, { codebook: { shape: [16, 48], data: nan } });
  const r = await expectOneLineError(
    ["tokenizer", "recon", "--tokenizer", tok, "--out", `${dir.path}/r.png`],
    /non-finite values/,
  );
  assert.equal(r.code, 1);
});

Deno.test("either tokenizer file may be given for its folder; another file is one clear error", async () => {
  await using dir = await tempDir();
  const tok = `${dir.path}/tok`;
  const tokenizer = await writeTokenizer(tok);
  for (const file of ["tokenizer.json", "tokenizer.safetensors"]) {
    const loaded = await PatchTokenizer.load(`${tok}/${file}`);
    assert.equal(loaded.config.hash, tokenizer.config.hash);
    assert.equal(loaded.dir, tok);
  }
  await Deno.writeTextFile(`${dir.path}/notes.txt`, "");
  await expectLoadError(`${dir.path}/notes.txt`, /notes\.txt is a file, not a tokenizer folder/);
  await expectOneLineError(
    ["tokenizer", "recon", "--tokenizer", `${dir.path}/notes.txt`, "--out", `${dir.path}/r.png`],
    /notes\.txt is a file, not a tokenizer folder/,
  );
});
