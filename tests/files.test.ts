/** src/util/files.ts: existence checks and atomic writes fail as a user would expect. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { exists, writeFileAtomic } from "../src/util/files.ts";
import { UserError } from "../src/errors.ts";

Deno.test("exists: a path under a regular file does not exist (no NotADirectory error)", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "model.safetensors");
    await Deno.writeTextFile(file, "x");
    assert.equal(await exists(file), true);
    assert.equal(await exists(join(file, "tokenizer.json")), false);
    assert.equal(await exists(join(dir, "missing", "x")), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeFileAtomic: a folder where a file's folder should be is one UserError naming the file", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const file = join(dir, "plain");
    await Deno.writeTextFile(file, "x");
    const target = join(file, "out.json");
    await assert.rejects(
      () => writeFileAtomic(target, "{}"),
      (err: unknown) =>
        err instanceof UserError && err.message.startsWith(`cannot write ${target}: `),
    );
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["plain"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
