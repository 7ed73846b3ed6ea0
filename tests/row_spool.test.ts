/**
 * The row spool of `data` (src/data/row_spool.ts): a shard's rows go through a file, and stream
 * from it into the .npz with the same bytes as from memory.
 */
import assert from "node:assert/strict";
import { RowSpool } from "../src/data/row_spool.ts";
import { decodeNpz, writeNpzAtomic } from "../src/data/npy.ts";
import { Rng } from "../src/util/rng.ts";
import { tempDir } from "./helpers.ts";

/** Rows of L codes; 1,500 x 341 is 1 MB, more than one write buffer and one deflate chunk. */
function rowsOf(count: number, L: number, seed: number): Uint16Array {
  const rng = new Rng(seed);
  return Uint16Array.from({ length: count * L }, () => rng.int(4096));
}

Deno.test("a spooled shard is the same file as one written from memory, and the spool is reusable", async () => {
  await using dir = await tempDir();
  const L = 341;
  const spool = new RowSpool(`${dir.path}/train.rows`, L);
  for (const [round, count] of [[0, 1500], [1, 7]] as const) {
    const codes = rowsOf(count, L, round);
    const labels = Int32Array.from({ length: count }, (_, i) => i % 10);
    for (let r = 0; r < count; r++) await spool.append(codes.subarray(r * L, (r + 1) * L));
    assert.equal(spool.rows, count);
    const streamed = await writeNpzAtomic(`${dir.path}/streamed.npz`, {
      codes: { shape: [count, L], type: Uint16Array, chunks: (n) => spool.chunks(n) },
      labels: { shape: [count], data: labels },
    });
    const direct = await writeNpzAtomic(`${dir.path}/direct.npz`, {
      codes: { shape: [count, L], data: codes },
      labels: { shape: [count], data: labels },
    });
    assert.equal(streamed.sha256, direct.sha256, `round ${round}`);
    const back = decodeNpz(await Deno.readFile(`${dir.path}/streamed.npz`), "streamed.npz");
    assert.deepEqual(back.codes.data, codes);
    await spool.reset(); // the next round starts from an empty spool
  }
  await spool.remove();
  assert.deepEqual(
    [...Deno.readDirSync(dir.path)].map((e) => e.name).sort(),
    ["direct.npz", "streamed.npz"],
  );
});

Deno.test("a stream shorter than its shape is an error, and no file is left under the name", async () => {
  await using dir = await tempDir();
  const spool = new RowSpool(`${dir.path}/val.rows`, 4);
  await spool.append(Uint16Array.of(1, 2, 3, 4));
  await assert.rejects(
    () =>
      writeNpzAtomic(`${dir.path}/val-00000.npz`, {
        codes: { shape: [2, 4], type: Uint16Array, chunks: (n) => spool.chunks(n) },
      }),
    /val-00000\.npz.*streamed 8 bytes, its shape needs 16/s,
  );
  await spool.remove();
  assert.deepEqual([...Deno.readDirSync(dir.path)], []);
});

Deno.test("a row of the wrong length is refused", async () => {
  await using dir = await tempDir();
  const spool = new RowSpool(`${dir.path}/train.rows`, 4);
  await assert.rejects(() => spool.append(Uint16Array.of(1, 2, 3)), /3 values, expected 4/);
  await spool.remove();
});
