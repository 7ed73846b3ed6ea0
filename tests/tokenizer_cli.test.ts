/**
 * `checkerboard tokenizer fit|recon` output paths and limits: each mistake is one clear line
 * before any work, and nothing is left behind.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { expectOneLineError, mountTmpfs, repoRoot, tempDir } from "./helpers.ts";

/** A patch VQ (the tokenizer of the earlier bundled model, patch 4, 512 codes). */
const TOKENIZER = join(repoRoot, "tests", "data", "mnist-patch-tokenizer");

Deno.test("tokenizer fit --out FILE and recon --out DIR are one clear line", async () => {
  await using tmp = await tempDir();
  const file = join(tmp.path, "a-file");
  await Deno.writeTextFile(file, "x\n");
  const fit = await expectOneLineError(
    ["tokenizer", "fit", "--out", file],
    /^checkerboard: error: --out .*a-file exists and is not a folder$/m,
  );
  assert.equal(fit.code, 1);
  assert.equal(await Deno.readTextFile(file), "x\n");
  const recon = await expectOneLineError(
    ["tokenizer", "recon", "--tokenizer", TOKENIZER, "--out", tmp.path],
    /--out .* is a folder; recon writes one PNG file \(e\.g\. .*recon\.png\)$/m,
  );
  assert.equal(recon.code, 1);
  const noFolder = await expectOneLineError(
    ["tokenizer", "recon", "--tokenizer", TOKENIZER, "--out", join(tmp.path, "no", "x.png")],
    /the folder .*no does not exist$/m,
  );
  assert.equal(noFolder.code, 1);
  const fileAsFolder = await expectOneLineError(
    ["tokenizer", "fit", "--out", join(file, "tok")],
    /cannot create the output folder .*a-file.tok: /,
  );
  assert.equal(fileAsFolder.code, 1);
  const entries = [];
  for await (const e of Deno.readDir(tmp.path)) entries.push(e.name);
  assert.deepEqual(entries, ["a-file"], "nothing left behind");
});

Deno.test("tokenizer fit: sizes beyond the limits are usage errors, not RangeErrors", async () => {
  await using tmp = await tempDir();
  for (
    const [args, pattern] of [
      [["--side", "100000"], /--side must be at most 256, got 100000/],
      [["--patch", "1000"], /--patch must be at most 64/],
      [["--max-patches", "1000000000000"], /--max-patches must be at most 5000000/],
      [
        ["--dataset", "mnist", "--ratio", "0.5"],
        /^checkerboard: error: --ratio: ratio must be greater than 1/m,
      ],
    ] as const
  ) {
    const r = await expectOneLineError(
      ["tokenizer", "fit", "--dataset", "emoji", "--out", join(tmp.path, "tok"), ...args],
      pattern,
    );
    assert.equal(r.code, 2);
  }
  for await (const e of Deno.readDir(tmp.path)) assert.fail(`left behind: ${e.name}`);
});

Deno.test("tokenizer fit and recon on a read-only file system: one clear line", async () => {
  await using tmp = await tempDir();
  const ro = join(tmp.path, "ro");
  await Deno.mkdir(ro);
  const unmount = await mountTmpfs(ro, "ro");
  // Without mount (not root, or no tmpfs) the case cannot be made (root ignores permissions):
  // it is skipped with a warning. The file-as-folder case above covers the same code path.
  if (!unmount) {
    console.warn("mount -t tmpfs -o ro is not available here: read-only case skipped");
    return;
  }
  try {
    const fit = await expectOneLineError(
      ["tokenizer", "fit", "--out", join(ro, "tok")],
      /cannot create the output folder .*ro.tok: Read-only file system/,
    );
    assert.equal(fit.code, 1);
    const recon = await expectOneLineError(
      ["tokenizer", "recon", "--tokenizer", TOKENIZER, "--out", join(ro, "x.png")],
      /--out .*x\.png: cannot write in .*ro: Read-only file system/,
    );
    assert.equal(recon.code, 1);
  } finally {
    await unmount();
  }
});
